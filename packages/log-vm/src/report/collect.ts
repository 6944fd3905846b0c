import {
  ClaimsCollector,
  Flag,
  Kind,
  escapeForTerminal,
  isLineKind,
  parseClaim,
  type ClaimsSummary,
} from '@appendlog/shared';
import type { StoredEntry } from '../entries.js';
import type { BufferedWriter } from '../output.js';
import { STREAM_MARK, describeEvent } from '../commands/show.js';
import { anyOf, stripAnsi, type HighlightPattern } from './patterns.js';

/**
 * One pass over a log's entries for the HTML report: the display text of
 * every entry embedded (or a window of it), the "look here first" groups,
 * the sessions and the lines per second.
 *
 * Display text is `show`'s: escapeForTerminal of the payload, so controls,
 * bidi overrides and invalid bytes arrive as visible escapes (`\e`, `\u202e`,
 * `\xff`) and a real backslash as `\\`. In that language `\e[...m` is always
 * a real SGR sequence (the viewer turns it into colours) and `\x3c` can never
 * stand for a byte (0x3c is printable), so every `<` is written as `\x3c`:
 * the embedded text holds no `<` at all and can never close its <script>
 * data block, start a comment or become markup.
 */
export interface Hit {
  seq: number;
  text: string;
}

export interface HighlightGroup {
  id: string;
  title: string;
  why: string;
  count: number;
  hits: Hit[];
}

export interface SessionInfo {
  session: number;
  openSeq: number | null;
  openTime: number | null;
  vm: string | null;
  argument: string | null;
  mode: string | null;
  closeSeq: number | null;
  closeTime: number | null;
  reason: string | null;
  lines: number | null;
  detail: string | null;
  /** Receive time of the session's last entry before its close: where a `lost` session really ended. */
  lastSeen: number | null;
}

export interface RateSeries {
  start: number;
  bucketMs: number;
  lines: number[];
  stderr: number[];
}

export interface LogIndex {
  mode: 'full' | 'window';
  entries: number;
  embedded: number;
  /** Runs of consecutive seqs in the embedded text: [firstSeq, count]. */
  segments: Array<[number, number]>;
  /** Receive times as [index delta, ms delta] pairs, one per change. */
  times: number[];
  window?: { head: number; tail: number; around: number; maxBytes: number; budgetExhausted: boolean };
}

export interface CollectedReport {
  groups: HighlightGroup[];
  sessions: SessionInfo[];
  sessionsOmitted: number;
  rate: RateSeries | null;
  claims: ClaimsSummary | null;
  badClaims: number;
  log: LogIndex;
  firstTime: number | null;
  lastTime: number | null;
}

export interface CollectOptions {
  patterns: readonly HighlightPattern[];
  /** Embed the whole log up to this many bytes of display text, else a window. */
  maxEmbedBytes: number;
  /** What the log is expected to hold (bytes of line payload), to choose the mode up front. */
  expectedBytes: number;
  hitsPerGroup?: number;
  /** Window mode: entries kept at the start, at the end, and before/after each highlight. */
  head?: number;
  tail?: number;
  around?: number;
}

const MAX_SESSIONS = 2000;
const MAX_HIT_CHARS = 400;
const LT = /</g;

/**
 * Printable ASCII other than `\` and `<`: escapeForTerminal would return
 * these bytes unchanged, and there is no `<` to replace (most build lines).
 */
function plainAscii(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c < 0x20 || c > 0x7e || c === 0x5c || c === 0x3c) return false;
  }
  return true;
}

/** The one display form of an entry (see above): `show`'s text, with `<` as `\x3c`. */
export function displayText(e: StoredEntry): string {
  if (isLineKind(e.header.kind) && plainAscii(e.payload)) return e.payload.toString('latin1');
  const text = isLineKind(e.header.kind) ? escapeForTerminal(e.payload) : describeEvent(e);
  return text.indexOf('<') < 0 ? text : text.replace(LT, '\\x3c');
}

/** Stream mark and flag mark, as in `show`. */
function prefix(e: StoredEntry): string {
  const f = e.header.flags;
  return (STREAM_MARK[e.header.kind] ?? '?') + (f & Flag.CONT ? '>' : f & Flag.NOEOL ? '%' : ' ');
}

interface Pending {
  seq: number;
  time: number;
  line: string;
}

export class ReportCollector {
  private readonly groups: HighlightGroup[];
  private readonly stderrGroup: HighlightGroup;
  private readonly noticeGroup: HighlightGroup;
  private readonly prefilter: RegExp | null;
  private readonly hitsPerGroup: number;
  private readonly sessions = new Map<number, SessionInfo>();
  private sessionsOmitted = 0;
  private readonly perSecond = new Map<number, [number, number]>();
  private readonly claims = new ClaimsCollector();
  private badClaims = 0;
  private readonly mode: 'full' | 'window';
  private readonly head: number;
  private readonly tail: number;
  private readonly around: number;
  private embeddedBytes = 0;
  private embedded = 0;
  private entries = 0;
  private segments: Array<[number, number]> = [];
  private lastSeq = -1;
  private times: number[] = [];
  private lastTime = 0;
  private lastTimeIndex = 0;
  private firstTime: number | null = null;
  private latestTime: number | null = null;
  /** Window mode: entries not embedded since the last embedded one (newest last). */
  private pending: Pending[] = [];
  private after = 0;
  private budgetExhausted = false;

  constructor(
    private readonly out: BufferedWriter,
    private readonly opts: CollectOptions,
  ) {
    this.groups = opts.patterns.map((p) => ({ id: p.id, title: p.title, why: p.why, count: 0, hits: [] }));
    this.stderrGroup = { id: 'stderr', title: 'lines on stderr', why: 'what the build wrote to its standard error (logsend tags the streams)', count: 0, hits: [] };
    this.noticeGroup = { id: 'log-vm-notice', title: 'log VM notices', why: 'refused frames, quotas, store errors: recorded by the log VM itself', count: 0, hits: [] };
    this.prefilter = anyOf(opts.patterns);
    this.hitsPerGroup = opts.hitsPerGroup ?? 100;
    this.mode = opts.expectedBytes > opts.maxEmbedBytes ? 'window' : 'full';
    this.head = opts.head ?? 1000;
    this.tail = opts.tail ?? 1000;
    this.around = opts.around ?? 20;
  }

  async push(e: StoredEntry): Promise<void> {
    const h = e.header;
    this.entries++;
    this.firstTime ??= h.time;
    this.latestTime = h.time;
    const line = prefix(e) + displayText(e);
    let hit = false;
    if (h.kind !== Kind.SESSION_CLOSE && h.session !== 0) this.seen(h.session, h.time);
    if (isLineKind(h.kind)) {
      this.rate(h.time, h.kind === Kind.STDERR);
      if (h.kind === Kind.STDERR) hit = this.add(this.stderrGroup, h.seq, line) || hit;
      hit = this.match(e, h.seq, line) || hit;
    } else {
      this.event(e);
      if (h.kind === Kind.NOTICE) hit = this.add(this.noticeGroup, h.seq, line) || hit;
    }
    if (this.mode === 'full') {
      await this.embed(h.seq, h.time, line);
      return;
    }
    await this.window(h.seq, h.time, line, hit);
  }

  private match(e: StoredEntry, seq: number, line: string): boolean {
    // Patterns read the line as text (invalid bytes as U+FFFD), without ANSI codes.
    const plain = stripAnsi(e.payload.toString('utf8'));
    if (this.prefilter !== null && !this.prefilter.test(plain)) return false;
    let any = false;
    for (let i = 0; i < this.groups.length; i++) {
      if (this.opts.patterns[i]!.re.test(plain)) any = this.add(this.groups[i]!, seq, line) || any;
    }
    return any;
  }

  private add(g: HighlightGroup, seq: number, line: string): boolean {
    g.count++;
    if (g.hits.length < this.hitsPerGroup) g.hits.push({ seq, text: line.length > MAX_HIT_CHARS ? `${line.slice(0, MAX_HIT_CHARS)}…` : line });
    return true;
  }

  private current: SessionInfo | undefined;

  private seen(session: number, time: number): void {
    if (this.current?.session !== session) this.current = this.sessions.get(session);
    if (this.current !== undefined) this.current.lastSeen = time;
  }

  private rate(time: number, stderr: boolean): void {
    const s = Math.floor(time / 1000);
    let b = this.perSecond.get(s);
    if (b === undefined) {
      b = [0, 0];
      this.perSecond.set(s, b);
    }
    b[0]++;
    if (stderr) b[1]++;
  }

  private event(e: StoredEntry): void {
    const h = e.header;
    if (h.kind === Kind.CLAIM) {
      try {
        this.claims.add(parseClaim(e.payload, 'BAD_ENTRY', h.seq));
      } catch {
        this.badClaims++;
      }
      return;
    }
    if (h.kind !== Kind.SESSION_OPEN && h.kind !== Kind.SESSION_CLOSE) return;
    let v: Record<string, unknown> = {};
    try {
      const parsed = JSON.parse(e.payload.toString('utf8')) as unknown;
      if (parsed !== null && typeof parsed === 'object') v = parsed as Record<string, unknown>;
    } catch {
      // shown as is in the log; the timeline just lacks the details
    }
    let s = this.sessions.get(h.session);
    if (s === undefined) {
      if (this.sessions.size >= MAX_SESSIONS) {
        if (h.kind === Kind.SESSION_OPEN) this.sessionsOmitted++;
        return;
      }
      s = { session: h.session, openSeq: null, openTime: null, vm: null, argument: null, mode: null, closeSeq: null, closeTime: null, reason: null, lines: null, detail: null, lastSeen: null };
      this.sessions.set(h.session, s);
      this.current = s;
    }
    const str = (x: unknown): string | null => (x === undefined || x === null ? null : escapeForTerminal(Buffer.from(typeof x === 'string' ? x : JSON.stringify(x), 'utf8')).slice(0, 200));
    if (h.kind === Kind.SESSION_OPEN) {
      s.openSeq = h.seq;
      s.openTime = h.time;
      s.lastSeen = h.time;
      s.vm = str(v.vm);
      s.argument = str(v.argument);
      s.mode = str(v.mode);
    } else {
      s.closeSeq = h.seq;
      s.closeTime = h.time;
      s.reason = str(v.reason);
      s.lines = typeof v.lines === 'number' ? v.lines : null;
      s.detail = str(v.detail);
    }
  }

  private async embed(seq: number, time: number, line: string): Promise<void> {
    if (seq === this.lastSeq + 1 && this.segments.length > 0) this.segments[this.segments.length - 1]![1]++;
    else this.segments.push([seq, 1]);
    this.lastSeq = seq;
    if (this.embedded === 0 || time !== this.lastTime) {
      this.times.push(this.embedded - this.lastTimeIndex, time - this.lastTime);
      this.lastTime = time;
      this.lastTimeIndex = this.embedded;
    }
    this.embedded++;
    this.embeddedBytes += line.length + 1;
    await this.out.write(`${line}\n`);
  }

  /**
   * Window mode: the first `head` entries, `around` entries before and after
   * every highlighted line, and the last `tail` entries, until the embedded
   * text reaches maxEmbedBytes; everything else is counted as left out.
   */
  private async window(seq: number, time: number, line: string, hit: boolean): Promise<void> {
    const budget = this.embeddedBytes < this.opts.maxEmbedBytes;
    if (!budget) this.budgetExhausted = true;
    if (this.entries <= this.head || (budget && (hit || this.after > 0))) {
      if (hit && budget) {
        for (const p of this.pending.slice(-this.around)) await this.embed(p.seq, p.time, p.line);
        this.after = this.around;
      } else if (this.after > 0) {
        this.after--;
      }
      this.pending = [];
      await this.embed(seq, time, line);
      return;
    }
    this.pending.push({ seq, time, line });
    if (this.pending.length > 2 * Math.max(this.tail, this.around)) this.pending = this.pending.slice(-Math.max(this.tail, this.around));
  }

  async end(): Promise<CollectedReport> {
    if (this.mode === 'window') {
      for (const p of this.pending.slice(-this.tail)) await this.embed(p.seq, p.time, p.line);
      this.pending = [];
    }
    const groups = [...this.groups, this.stderrGroup, this.noticeGroup];
    return {
      groups,
      sessions: [...this.sessions.values()].sort((a, b) => a.session - b.session),
      sessionsOmitted: this.sessionsOmitted,
      rate: this.rateSeries(),
      claims: this.claims.summary() ?? null,
      badClaims: this.badClaims,
      firstTime: this.firstTime,
      lastTime: this.latestTime,
      log: {
        mode: this.mode,
        entries: this.entries,
        embedded: this.embedded,
        segments: this.segments,
        times: this.times,
        ...(this.mode === 'window'
          ? { window: { head: this.head, tail: this.tail, around: this.around, maxBytes: this.opts.maxEmbedBytes, budgetExhausted: this.budgetExhausted } }
          : {}),
      },
    };
  }

  /** Lines per bucket over the build's time: 1 s buckets, wider when the build ran longer than 600 s. */
  private rateSeries(): RateSeries | null {
    if (this.perSecond.size === 0) return null;
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of this.perSecond.keys()) {
      if (s < lo) lo = s;
      if (s > hi) hi = s;
    }
    const span = hi - lo + 1;
    const width = Math.max(1, Math.ceil(span / 600));
    const n = Math.ceil(span / width);
    const lines = new Array<number>(n).fill(0);
    const stderr = new Array<number>(n).fill(0);
    for (const [s, [l, e]] of this.perSecond) {
      const i = Math.floor((s - lo) / width);
      lines[i]! += l;
      stderr[i]! += e;
    }
    return { start: lo * 1000, bucketMs: width * 1000, lines, stderr };
  }
}
