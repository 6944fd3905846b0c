#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--warn") == 0) {
        fprintf(stderr, "hello: warning: \033[33mthis line went to stderr\033[0m\n");
        return 0;
    }
    printf("Hello from the build VM\n");
    return 0;
}
