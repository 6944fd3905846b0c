#!/usr/bin/env python3
"""The Qubes builder's calling code for its build logs, as a test client.

qubes-builder-github (github-action.py, make_with_log_qrexec) logs a build
like this, and nothing here departs from it:

  * subprocess.Popen(["qrexec-client-vm", "dom0", "qubesbuilder.BuildLog"],
    text=True, stdout=PIPE, stderr=PIPE, stdin=PIPE);
  * a logging.StreamHandler on p.stdin added to the builder's logger, which
    then logs the build at DEBUG level, one record per message;
  * p.stdin.close(), p.wait(), then p.stdout.read() (stderr is never read);
  * the first stdout line must match ^.*[\\S\\w.-]+/log_[\\S\\w.-]+$ (re.match),
    and the report links https://github.com/{logs_repo}/tree/master/{path}.
    An empty stdout makes lines[0] raise IndexError, failing the build.

Usage: builder_client.py MESSAGES_FILE [SUBDIR]. MESSAGES_FILE is UTF-8; each
line becomes one log record. Prints one JSON object: the path the builder
got (or the exception it died with), the URL, the client's exit status.
"""
import json
import logging
import re
import subprocess
import sys

BUILD_LOG_PATH_RE = r"^.*[\S\w.-]+/log_[\S\w.-]+$"
LOGS_REPO = "QubesOS/build-logs"


def get_log_file_from_buildlog(stdout, logger):
    lines = stdout.splitlines()
    if not stdout or not lines:
        logger.error("No output from qubesbuilder.BuildLog. Any policy RPC or LogVM issue?")
    if re.match(BUILD_LOG_PATH_RE, lines[0]):
        return lines[0]
    logger.error("Cannot parse log file provided by qubesbuilder.BuildLog RPC.")
    return None


def main():
    with open(sys.argv[1], encoding="utf-8", newline="") as f:
        messages = f.read().split("\n")
    if messages and messages[-1] == "":
        messages.pop()
    service = "qubesbuilder.BuildLog" + ("+" + sys.argv[2] if len(sys.argv) > 2 else "")

    log = logging.getLogger("qubesbuilder")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR)
    log.addHandler(console)

    result = {}
    try:
        run(service, messages, log, result)
    except Exception as e:  # what would end the builder's run
        result["exception"] = type(e).__name__
    print(json.dumps(result))


def run(service, messages, log, result):
    with subprocess.Popen(
        ["qrexec-client-vm", "dom0", service],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
    ) as p:
        qrexec_stream = logging.StreamHandler(stream=p.stdin)
        log.addHandler(qrexec_stream)
        try:
            for m in messages:
                log.debug(m)
            p.stdin.close()
            result["returncode"] = p.wait()
            try:
                log_file = get_log_file_from_buildlog(p.stdout.read(), log)
                result["log_file"] = log_file
                if log_file:
                    result["url"] = f"https://github.com/{LOGS_REPO}/tree/master/{log_file}"
            except Exception as e:  # the build fails here
                result["exception"] = type(e).__name__
        finally:
            log.removeHandler(qrexec_stream)


if __name__ == "__main__":
    main()
