/**
 * The appendlog release version, shown by `logvm --version` and
 * `logsend --version`. A constant rather than a package.json read, so the
 * single-file verifier (one bundled file, no package.json beside it) says the
 * same; test/packaging/version.test.ts keeps it equal to every package.json,
 * debian/changelog and the rpm specs.
 */
export const VERSION = '0.1.0';
