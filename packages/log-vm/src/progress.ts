/**
 * A progress line on stderr for long work (verify, export, report), only
 * when stderr is a terminal: never in a pipe, a file or a CI log. It fits
 * the terminal's width (redrawn on resize), and shows the rate and an ETA
 * once there is a rate to go by.
 */
export type ProgressFn = ((done: number, total: number) => void) & { done(): void };

export function formatProgress(label: string, done: number, total: number, elapsedMs: number, columns: number): string {
  const pct = total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : 0;
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  const eta = rate > 0 && total > done && elapsedMs > 500 ? `ETA ${duration(((total - done) / rate) * 1000)}` : '';
  const counts = `${pct}% ${done}/${total}${eta ? ` ${eta}` : ''}`;
  // label [####....] counts: the bar takes what the width leaves, from 10 to 40 cells, or goes.
  // Room for the longest counts this job will show, so the bar keeps its width.
  const widest = `100% ${total}/${total} ETA 00h00m`.length;
  const room = columns - 1 - label.length - Math.max(widest, counts.length) - 4;
  const width = Math.min(40, room);
  if (width < 10) return `${`${label} ${counts}`.slice(0, Math.max(0, columns - 1))}`;
  const fill = Math.round((pct * width) / 100);
  return `${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${counts}`;
}

function duration(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function makeProgress(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressFn {
  const tty = stream.isTTY === true;
  const started = Date.now();
  let last = 0;
  const fn = (done: number, total: number): void => {
    if (!tty) return;
    const t = Date.now();
    if (t - last < 200) return;
    last = t;
    const columns = stream.columns > 0 ? stream.columns : 80;
    stream.write(`\r${formatProgress(label, done, total, t - started, columns)}\x1b[K`);
  };
  fn.done = (): void => {
    if (tty && last !== 0) stream.write('\r\x1b[K');
  };
  return fn;
}
