/** A progress line on stderr, only when stderr is a terminal. */
export function makeProgress(label: string): ((done: number, total: number) => void) & { done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  const fn = (done: number, total: number): void => {
    if (!tty) return;
    const t = Date.now();
    if (t - last < 200) return;
    last = t;
    const pct = total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : 0;
    const width = 30;
    const fill = Math.round((pct * width) / 100);
    process.stderr.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct}% ${done}/${total}`);
  };
  fn.done = (): void => {
    if (tty && last !== 0) process.stderr.write('\r\x1b[K');
  };
  return fn;
}
