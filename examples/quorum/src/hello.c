/* The program the example release ships. */
#include <stdio.h>

int main(void) {
  puts("hello from a build that three builders agreed on");
  return 0;
}
