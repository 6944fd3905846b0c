import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import {
  AppendlogError,
  BlockBuilder,
  EVENTS_LOG_NAME,
  Kind,
  canonicalBytes,
  canonicalJson,
  genesisHash,
  type CanonicalValue,
  type FinishedBlock,
  type PendingBlock,
} from '@appendlog/shared';
import { storeError } from './errors.js';

/**
 * The SQLite store. One row per committed batch ("block") holds the batch's
 * canonical entry encodings end to end plus their hashes; the chain itself is
 * per entry (docs/FORMAT.md section 7). WAL mode and a busy timeout let many
 * `logvm append` processes (several VMs, several logs of one VM, even two
 * sessions of one log) write one file: every batch is a BEGIN IMMEDIATE
 * transaction that reads the log's head and appends after it, so chains stay
 * linear whatever the interleaving.
 */
export const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
  id      INTEGER PRIMARY KEY,
  vm      TEXT NOT NULL,
  name    TEXT NOT NULL,
  created INTEGER NOT NULL,
  genesis BLOB NOT NULL,
  UNIQUE (vm, name)
);
CREATE TABLE IF NOT EXISTS blocks (
  id         INTEGER PRIMARY KEY,
  log_id     INTEGER NOT NULL REFERENCES logs (id),
  first_seq  INTEGER NOT NULL,
  count      INTEGER NOT NULL,
  first_time INTEGER NOT NULL,
  last_time  INTEGER NOT NULL,
  data       BLOB NOT NULL,
  hashes     BLOB NOT NULL,
  UNIQUE (log_id, first_seq)
);
-- Bytes stored per log (entry data with headers, and the entry hashes): what
-- quotas count, so a flood of empty lines, events or claims hits them too.
CREATE TABLE IF NOT EXISTS usage (
  log_id INTEGER PRIMARY KEY REFERENCES logs (id),
  stored INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS heads (
  log_id    INTEGER PRIMARY KEY REFERENCES logs (id),
  entries   INTEGER NOT NULL,
  lines     INTEGER NOT NULL,
  bytes     INTEGER NOT NULL,
  sessions  INTEGER NOT NULL,
  head      BLOB NOT NULL,
  last_time INTEGER,
  sealed    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS seals (
  seal_index INTEGER PRIMARY KEY,
  log_id     INTEGER NOT NULL UNIQUE REFERENCES logs (id),
  manifest   BLOB NOT NULL,
  seal_hash  BLOB NOT NULL,
  prev_hash  BLOB
);
-- Sessions in progress, to notice one whose process died (SIGKILL, crash):
-- the next session of the log records it as lost. Not part of the chain.
CREATE TABLE IF NOT EXISTS live_sessions (
  log_id  INTEGER NOT NULL REFERENCES logs (id),
  session INTEGER NOT NULL,
  pid     INTEGER NOT NULL,
  PRIMARY KEY (log_id, session)
);
-- Logs left open because a session did not end cleanly while the service
-- was set to seal at the end (sealOnClose): an admin's marker, not part of
-- the chain (the chain holds the close reason and a seal-skipped notice).
CREATE TABLE IF NOT EXISTS log_flags (
  log_id INTEGER PRIMARY KEY REFERENCES logs (id),
  flag   TEXT NOT NULL,
  time   INTEGER NOT NULL
);
-- A seal in progress (docs/FORMAT.md 7.3): while a log has a row here, every
-- batch and every open of that log is refused exactly as if it were sealed,
-- so its head cannot move while the manifest is signed (the signer is called
-- once). One row per store at a time: the seal chain is linear. Not part of
-- the chain; a stale row (its process gone, or older than the bound) is
-- cleared by the next seal or append that meets it, and recorded.
CREATE TABLE IF NOT EXISTS sealing (
  log_id     INTEGER PRIMARY KEY REFERENCES logs (id),
  token      TEXT NOT NULL,
  pid        INTEGER NOT NULL,
  start      TEXT,
  time       INTEGER NOT NULL,
  entries    INTEGER NOT NULL,
  head       BLOB NOT NULL,
  seal_index INTEGER NOT NULL
);
-- Sessions cut by a seal in progress: if that seal fails they get a close
-- (reason error) when the claim is released; if it commits they stay
-- without one, as every session sealed under it.
CREATE TABLE IF NOT EXISTS sealing_cuts (
  log_id  INTEGER NOT NULL REFERENCES logs (id),
  session INTEGER NOT NULL,
  lines   INTEGER NOT NULL,
  bytes   INTEGER NOT NULL,
  refused TEXT NOT NULL,
  PRIMARY KEY (log_id, session)
);
-- Refusals a VM can trigger without storing anything of its own (a session
-- refused at open), coalesced per VM and notice kind (docs/FORMAT.md 13.5):
-- the first of a window is chained at once, the others counted here and
-- chained as one notice with the count at the VM's next event. Not part of
-- the chain.
CREATE TABLE IF NOT EXISTS event_tally (
  vm     TEXT NOT NULL,
  notice TEXT NOT NULL,
  since  INTEGER NOT NULL,
  span   INTEGER NOT NULL,
  count  INTEGER NOT NULL,
  hits   INTEGER NOT NULL,
  first  INTEGER,
  last   INTEGER,
  sample TEXT,
  PRIMARY KEY (vm, notice)
);
-- Service processes sealing a log at the end of their session (sealOnClose,
-- docs/FORMAT.md 7.4): each holds a slot of its VM's session limit until it
-- ends, so a VM cannot pile up processes waiting for the store's one seal at
-- a time. Not part of the chain; rows of dead processes do not count.
CREATE TABLE IF NOT EXISTS closing (
  id    INTEGER PRIMARY KEY,
  vm    TEXT NOT NULL,
  pid   INTEGER NOT NULL,
  start TEXT
);
CREATE TABLE IF NOT EXISTS signatures (
  seal_index INTEGER NOT NULL REFERENCES seals (seal_index),
  n          INTEGER NOT NULL,
  armored    TEXT NOT NULL,
  PRIMARY KEY (seal_index, n)
);

CREATE TRIGGER IF NOT EXISTS logs_no_update BEFORE UPDATE ON logs
  BEGIN SELECT RAISE(ABORT, 'appendlog: logs are append-only'); END;
CREATE TRIGGER IF NOT EXISTS logs_no_delete BEFORE DELETE ON logs
  BEGIN SELECT RAISE(ABORT, 'appendlog: logs are append-only'); END;
CREATE TRIGGER IF NOT EXISTS blocks_no_update BEFORE UPDATE ON blocks
  BEGIN SELECT RAISE(ABORT, 'appendlog: entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS blocks_no_delete BEFORE DELETE ON blocks
  BEGIN SELECT RAISE(ABORT, 'appendlog: entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS heads_no_delete BEFORE DELETE ON heads
  BEGIN SELECT RAISE(ABORT, 'appendlog: heads are append-only'); END;
CREATE TRIGGER IF NOT EXISTS heads_forward_only BEFORE UPDATE ON heads
  WHEN OLD.sealed = 1 OR NEW.log_id <> OLD.log_id OR NEW.entries < OLD.entries
    OR NEW.lines < OLD.lines OR NEW.bytes < OLD.bytes
    OR NEW.sessions < OLD.sessions OR NEW.sealed < OLD.sealed
  BEGIN SELECT RAISE(ABORT, 'appendlog: a head only moves forward, and never after the seal'); END;
CREATE TRIGGER IF NOT EXISTS seals_no_update BEFORE UPDATE ON seals
  BEGIN SELECT RAISE(ABORT, 'appendlog: seals are append-only'); END;
CREATE TRIGGER IF NOT EXISTS seals_no_delete BEFORE DELETE ON seals
  BEGIN SELECT RAISE(ABORT, 'appendlog: seals are append-only'); END;
CREATE TRIGGER IF NOT EXISTS signatures_no_update BEFORE UPDATE ON signatures
  BEGIN SELECT RAISE(ABORT, 'appendlog: signatures are append-only'); END;
CREATE TRIGGER IF NOT EXISTS signatures_no_delete BEFORE DELETE ON signatures
  BEGIN SELECT RAISE(ABORT, 'appendlog: signatures are append-only'); END;
`;

export interface LogRow {
  id: number;
  vm: string;
  name: string;
  created: number;
  genesis: Buffer;
}

export interface HeadRow {
  log_id: number;
  entries: number;
  lines: number;
  bytes: number;
  sessions: number;
  head: Buffer;
  last_time: number | null;
  sealed: number;
}

export interface BlockRow {
  id: number;
  first_seq: number;
  count: number;
  first_time: number;
  last_time: number;
  data: Buffer;
  hashes: Buffer;
}

export interface LogSummary {
  vm: string;
  name: string;
  state: 'open' | 'sealed';
  entries: number;
  lines: number;
  bytes: number;
  sessions: number;
  created: number;
  firstTime: number | null;
  lastTime: number | null;
  head: string;
  /** Why an open log was not sealed at the end of its session (sealOnClose), or null. */
  flag: string | null;
}

export interface SealRow {
  seal_index: number;
  log_id: number;
  manifest: Buffer;
  seal_hash: Buffer;
  prev_hash: Buffer | null;
}

/** A seal in progress: the row of `sealing` (docs/FORMAT.md 7.3). */
export interface SealClaim {
  log_id: number;
  /** Random, per claim: the sealer commits only while the row is still its own. */
  token: string;
  pid: number;
  /** The sealer's process start time (/proc/PID/stat field 22), to tell a reused pid; null without /proc. */
  start: string | null;
  time: number;
  /** The head being signed. */
  entries: number;
  head: Buffer;
  seal_index: number;
}

/**
 * A claim older than this is stale whatever its pid says: no signer prompt
 * is meant to wait that long, and it bounds what a reused pid can hold up.
 * A sealer still running past it finds its claim gone and fails LOG_BUSY.
 */
export const SEAL_CLAIM_STALE_MS = 60 * 60 * 1000;

/** A row of event_tally: refusals of one VM and kind in the current window. */
interface TallyRow {
  vm: string;
  notice: string;
  /** Start (ms) and length of the window. */
  since: number;
  span: number;
  /** Refusals counted and not chained yet, and all counted in this window. */
  count: number;
  hits: number;
  first: number | null;
  last: number | null;
  /** The last counted refusal's notice (canonical JSON). */
  sample: string | null;
}

/** The coalescing window of refusals (docs/FORMAT.md 13.5), and how long it can grow while a flood goes on. */
export const EVENT_WINDOW_MS = 60 * 1000;
export const EVENT_WINDOW_MAX_MS = 24 * 60 * 60 * 1000;

/** LOG_SEALED because of a seal, committed (`sealed`) or in progress (`sealing`): where the log was cut. */
export class SealRefusal extends AppendlogError {
  constructor(
    message: string,
    readonly state: 'sealed' | 'sealing',
    /** The entries and head the log was cut at: the SEAL entry, or the head being signed. */
    readonly entries: number,
    readonly head: string,
    readonly sealIndex: number | null,
  ) {
    super('LOG_SEALED', message);
  }
}

/** A session cut by a seal in progress, for its close if that seal fails. */
export interface SessionCut {
  session: number;
  /** Lines and payload bytes the session had stored (the refused batch not counted). */
  lines: number;
  bytes: number;
  /** What was refused, for the close's detail. */
  refused: string;
}

/**
 * Byte quotas on what a log stores: every entry with its header and hash
 * (lines, events, claims), not only line payloads; past them a session is
 * closed with reason `quota`.
 */
export interface Quotas {
  logBytes: number;
  vmBytes: number;
}

export const DEFAULT_QUOTAS: Quotas = { logBytes: 4 * 2 ** 30, vmBytes: 16 * 2 ** 30 };

export interface StoreOptions {
  readonly?: boolean;
  /** Create the file (and schema) if missing; otherwise a missing store is LOG_NOT_FOUND. */
  create?: boolean;
  /** SQLite busy timeout: how long a writer waits for another's transaction. */
  busyTimeoutMs?: number;
  /** Largest store file, in MiB (SQLite max_page_count); past it writes fail as disk full. */
  maxStoreMiB?: number;
  quotas?: Quotas;
}

/** Which service wrote a log (the first session-open's `service`, absent for qubes.AppendLog). */
export const DEFAULT_SERVICE = 'qubes.AppendLog';
/** The `service` of the log VM's own event sessions (VM/logvm-events). */
export const EVENTS_SERVICE = 'logvm';

export interface OpenOptions {
  /** The service opening the session; a log belongs to the service that created it. */
  service?: string;
  /** Refuse (NAME_CONFLICT) when the log exists already: the caller picks another name. */
  createOnly?: boolean;
  /** Log-VM event sessions carry no line bytes and must not be refused by a VM's quota. */
  skipQuota?: boolean;
  /** Refuse (SESSION_LIMIT) when the VM already has this many live sessions. */
  maxSessionsPerVm?: number;
}

/** What an append callback sees inside the write transaction. */
export interface TxnHead {
  log: LogRow;
  head: HeadRow;
}

/**
 * better-sqlite3, loaded when the first store is opened rather than at
 * import: the commands that read a bundle (verify-chain BUNDLE, show, cosign
 * ...) import this module but never open a store, and loading the addon is a
 * measurable part of their start-up.
 */
let Sqlite: typeof Database | undefined;
function sqlite(): typeof Database {
  return (Sqlite ??= createRequire(import.meta.url)('better-sqlite3') as typeof Database);
}

export class Store {
  readonly db: Database.Database;
  readonly path: string;

  quotas: Quotas = DEFAULT_QUOTAS;

  /** Prepared once per connection: the statements every batch runs (preparing one costs tens of us, ~10 per batch). */
  private readonly statements = new Map<string, Database.Statement>();

  private constructor(db: Database.Database, path: string) {
    this.db = db;
    this.path = path;
  }

  /** A prepared statement for `sql`, from the cache (not for iterate: a cached statement must not be busy). */
  private q(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (st === undefined) this.statements.set(sql, (st = this.db.prepare(sql)));
    return st;
  }

  static open(path: string, opts: StoreOptions = {}): Store {
    let db: Database.Database;
    try {
      if (opts.create) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new (sqlite())(path, { readonly: opts.readonly ?? false, fileMustExist: !(opts.create ?? false) });
    } catch (e) {
      if (!(opts.create ?? false) && !existsSync(path)) {
        throw new AppendlogError('LOG_NOT_FOUND', `no store at ${path} (nothing has been appended yet, or use --db)`);
      }
      throw storeError(`cannot open store ${path}`, e);
    }
    try {
      db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 60_000}`);
      if (!opts.readonly) {
        // 64 KiB pages: a batch of ~1 MiB is 16 overflow pages, not 256 (a new
        // file only; the page size cannot change once the file is in WAL mode).
        if ((db.pragma('page_count', { simple: true }) as number) === 0) db.pragma('page_size = 65536');
        db.pragma('journal_mode = WAL');
        // Checkpoint every ~4 MiB of WAL (the default counts pages: 64 MiB here).
        db.pragma('wal_autocheckpoint = 64');
        db.pragma('cache_size = -8000');
        // FULL: a commit survives power loss of the log VM, not only a crash
        // of the process; one fsync per batch, not per line.
        db.pragma('synchronous = FULL');
        db.pragma('foreign_keys = ON');
        const version = db.pragma('user_version', { simple: true }) as number;
        if (version === 0) {
          db.transaction(() => {
            db.exec(SCHEMA);
            db.pragma(`user_version = ${SCHEMA_VERSION}`);
          }).immediate();
        } else if (version === SCHEMA_VERSION) {
          db.exec(SCHEMA); // IF NOT EXISTS: adds what a store made by an earlier build lacks
        } else {
          throw new AppendlogError('STORE_ERROR', `store ${path} has schema version ${version}; this logvm knows ${SCHEMA_VERSION}`);
        }
      }
      if (opts.maxStoreMiB !== undefined) {
        const pageSize = db.pragma('page_size', { simple: true }) as number;
        db.pragma(`max_page_count = ${Math.max(1, Math.floor((opts.maxStoreMiB * 2 ** 20) / pageSize))}`);
      }
    } catch (e) {
      db.close();
      throw storeError(`cannot prepare store ${path}`, e);
    }
    const store = new Store(db, path);
    if (opts.quotas) store.quotas = opts.quotas;
    return store;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  findLog(vm: string, name: string): LogRow | undefined {
    return this.db.prepare('SELECT id, vm, name, created, genesis FROM logs WHERE vm = ? AND name = ?').get(vm, name) as
      | LogRow
      | undefined;
  }

  requireLog(vm: string, name: string): LogRow {
    const log = this.findLog(vm, name);
    if (log === undefined) throw new AppendlogError('LOG_NOT_FOUND', `no log ${vm}/${name} in ${this.path}`);
    return log;
  }

  getHead(logId: number): HeadRow {
    const head = this.q('SELECT * FROM heads WHERE log_id = ?').get(logId) as HeadRow | undefined;
    if (head === undefined) throw new AppendlogError('STORE_INCONSISTENT', `log ${logId} has no head row`);
    return head;
  }

  /**
   * Creates the log if it does not exist and writes the session-open event,
   * in one transaction. Refuses a sealed log, and a name that differs from an
   * existing log of the same VM only in case (an auditor could not tell them
   * apart). Returns the log and its new session number.
   */
  openSession(
    vm: string,
    name: string,
    now: () => number,
    details: Record<string, CanonicalValue>,
    opts: OpenOptions = {},
  ): { log: LogRow; session: number; block: FinishedBlock } {
    const builder = new BlockBuilder(4096);
    let session = 0;
    const service = opts.service ?? DEFAULT_SERVICE;
    const run = this.db.transaction(() => {
      let log = this.findLog(vm, name);
      if (log !== undefined && opts.createOnly) {
        throw new AppendlogError('NAME_CONFLICT', `log ${vm}/${name} exists already`);
      }
      if (log !== undefined && this.logService(log) !== service) {
        // A log belongs to the service that created it: qubes.AppendLog can
        // neither add to a qubesbuilder.BuildLog log (whose text file is a view
        // of one session) nor to the log VM's own events.
        throw new AppendlogError('NAME_CONFLICT', `log ${vm}/${name} belongs to ${this.logService(log)}; ${service} cannot append to it`);
      }
      if (log === undefined) {
        const clash = this.db
          .prepare('SELECT name FROM logs WHERE vm = ? AND name = ? COLLATE NOCASE')
          .get(vm, name) as { name: string } | undefined;
        if (clash !== undefined) {
          throw new AppendlogError(
            'NAME_CONFLICT',
            `log name ${name} differs from the existing log ${vm}/${clash.name} only in case; use the existing name or another one`,
          );
        }
        const created = now();
        const genesis = genesisHash({ vm, name, created });
        const id = Number(
          this.db.prepare('INSERT INTO logs (vm, name, created, genesis) VALUES (?, ?, ?, ?)').run(vm, name, created, genesis)
            .lastInsertRowid,
        );
        this.db
          .prepare('INSERT INTO heads (log_id, entries, lines, bytes, sessions, head, last_time, sealed) VALUES (?, 0, 0, 0, 0, ?, NULL, 0)')
          .run(id, genesis);
        log = { id, vm, name, created, genesis };
      }
      const claim = this.activeClaim(log, now);
      if (claim !== undefined) {
        // Refused like a sealed log: nothing of this session's input has been read.
        throw this.sealingRefusal(log, claim, 'is being sealed; nothing more can be appended');
      }
      const head = this.getHead(log.id);
      if (head.sealed) throw this.sealedRefusal(log, head, 'is sealed; nothing more can be appended');
      if (!opts.skipQuota) this.checkQuota(log, head, 0);
      if (opts.maxSessionsPerVm !== undefined) this.checkSessionLimit(vm, opts.maxSessionsPerVm);
      // Sessions whose process is gone without a close event: record them as lost.
      const live = this.db.prepare('SELECT session, pid FROM live_sessions WHERE log_id = ?').all(log.id) as Array<{ session: number; pid: number }>;
      for (const l of live) {
        if (processAlive(l.pid)) continue;
        builder.add(now(), l.session, Kind.SESSION_CLOSE, 0, canonicalBytes({
          reason: 'lost',
          session: l.session,
          detail: `the service process ${l.pid} ended without closing the session (killed or crashed); its entries up to seq ${head.entries} were committed, anything it had not committed is lost`,
        }));
        this.q('DELETE FROM live_sessions WHERE log_id = ? AND session = ?').run(log.id, l.session);
      }
      session = head.sessions + 1;
      const svc = service === DEFAULT_SERVICE ? {} : { service };
      builder.add(now(), session, Kind.SESSION_OPEN, 0, canonicalBytes({ ...details, ...svc, session, vm }));
      const block = this.insertBlock(log, head, builder, 1);
      this.db.prepare('INSERT OR REPLACE INTO live_sessions (log_id, session, pid) VALUES (?, ?, ?)').run(log.id, session, process.pid);
      return { log, block };
    });
    try {
      const { log, block } = run.immediate();
      return { log, session, block };
    } catch (e) {
      throw storeError(`cannot open a session on ${vm}/${name}`, e);
    }
  }

  /**
   * The service that created a log: the `service` member of its first
   * entry, the first session-open (qubes.AppendLog when absent). The first
   * block of a log is always its first open transaction, so it is small.
   */
  logService(log: LogRow): string {
    const first = this.db.prepare('SELECT data FROM blocks WHERE log_id = ? ORDER BY first_seq LIMIT 1').get(log.id) as { data: Buffer } | undefined;
    if (first === undefined || first.data.length < 26) return DEFAULT_SERVICE;
    const length = first.data.readUInt32BE(22);
    if (first.data[20] !== Kind.SESSION_OPEN || 26 + length > first.data.length) return DEFAULT_SERVICE;
    try {
      const v = JSON.parse(first.data.toString('utf8', 26, 26 + length)) as { service?: unknown };
      return typeof v.service === 'string' ? v.service : DEFAULT_SERVICE;
    } catch {
      return DEFAULT_SERVICE;
    }
  }

  /**
   * Records log-VM events about `vm`'s logs in VM/logvm-events: one session
   * of its own (open, the notices, close `eof`) in one transaction, so each
   * event is chained and attributable (docs/FORMAT.md 13.5). Refusals of
   * `vm` counted but not chained yet (recordRefusal) go in first, as one
   * notice per kind with their count. No quota applies: the entries hold no
   * line bytes, and what a VM can trigger without a session of its own is
   * coalesced (recordRefusal), so the log grows by a bounded amount.
   */
  recordEvents(vm: string, notices: Array<Record<string, CanonicalValue>>, now: () => number = Date.now): { session: number; entries: number } {
    const run = this.db.transaction(() => {
      const all = [...this.takeTallies(vm), ...notices];
      const name = EVENTS_LOG_NAME;
      const opened = this.openSession(vm, name, now, { mode: 'event', pid: process.pid }, { service: EVENTS_SERVICE, skipQuota: true });
      const builder = new BlockBuilder(4096);
      for (const n of all) builder.add(now(), opened.session, Kind.NOTICE, 0, canonicalBytes(n));
      builder.add(now(), opened.session, Kind.SESSION_CLOSE, 0, canonicalBytes({ reason: 'eof', session: opened.session, lines: 0, bytes: 0 }));
      const block = this.append(opened.log, builder, { endSession: opened.session, skipQuota: true });
      return { session: opened.session, entries: block.firstSeq + block.count - 1 };
    });
    try {
      return run.immediate();
    } catch (e) {
      throw storeError(`cannot record events of ${vm}`, e);
    }
  }

  /**
   * Records a refusal that `vm` can trigger without storing anything of its
   * own (a session refused at open: `session-limit`), coalesced per VM and
   * kind (docs/FORMAT.md 13.5): the first refusal of a window is chained at
   * once; later ones in the window are only counted (event_tally) and
   * chained as one notice with `count`, `first`, `last` at the VM's next
   * event. The window is EVENT_WINDOW_MS and doubles (up to
   * EVENT_WINDOW_MAX_MS) at each new window opened within a day of the
   * last one's end, however the refusals are paced,
   * so a flood that never stops costs about two notices a day.
   * Returns whether this refusal was chained on its own.
   */
  recordRefusal(vm: string, notice: Record<string, CanonicalValue> & { notice: string }, now: () => number = Date.now): boolean {
    const run = this.db.transaction(() => {
      const t = now();
      const row = this.db.prepare('SELECT * FROM event_tally WHERE vm = ? AND notice = ?').get(vm, notice.notice) as TallyRow | undefined;
      if (row !== undefined && t >= row.since && t < row.since + row.span) {
        this.db
          .prepare('UPDATE event_tally SET count = count + 1, hits = hits + 1, first = coalesce(first, ?), last = ?, sample = ? WHERE vm = ? AND notice = ?')
          .run(t, t, canonicalJson(notice), vm, notice.notice);
        return false;
      }
      // Any refusal within a day of the last window's end doubles the window:
      // a VM pacing its refusals just past each window (every 61 s) would
      // otherwise have each one chained, ~1400 notices a day for ever. Only a
      // day without refusals after a window brings it back to its base length.
      const span = row !== undefined && t >= row.since && t < row.since + row.span + EVENT_WINDOW_MAX_MS ? Math.min(row.span * 2, EVENT_WINDOW_MAX_MS) : EVENT_WINDOW_MS;
      this.recordEvents(vm, [notice], now); // chains the last window's count first
      this.db
        .prepare(
          `INSERT INTO event_tally (vm, notice, since, span, count, hits, first, last, sample) VALUES (?, ?, ?, ?, 0, 0, NULL, NULL, NULL)
             ON CONFLICT (vm, notice) DO UPDATE SET since = excluded.since, span = excluded.span, count = 0, hits = 0, first = NULL, last = NULL, sample = NULL`,
        )
        .run(vm, notice.notice, t, span);
      return true;
    });
    try {
      return run.immediate();
    } catch (e) {
      throw storeError(`cannot record a refusal of ${vm}`, e);
    }
  }

  /** Inside a transaction: the counted refusals of `vm` as notices (one per kind with a count), and the counts reset. */
  private takeTallies(vm: string): Array<Record<string, CanonicalValue>> {
    const rows = this.db.prepare('SELECT * FROM event_tally WHERE vm = ? AND count > 0 ORDER BY notice').all(vm) as TallyRow[];
    if (rows.length === 0) return [];
    this.db.prepare('UPDATE event_tally SET count = 0, first = NULL, last = NULL, sample = NULL WHERE vm = ?').run(vm);
    return rows.map((r) => {
      let sample: Record<string, CanonicalValue> = {};
      try {
        sample = JSON.parse(r.sample ?? '{}') as Record<string, CanonicalValue>;
      } catch {
        // written by us as canonical JSON; an edited row only loses its sample
      }
      return { ...sample, notice: r.notice, count: r.count, first: r.first, last: r.last };
    });
  }

  /** Sessions of the log still being written (rows of live_sessions). */
  liveSessions(log: LogRow): number {
    return (this.db.prepare('SELECT count(*) AS n FROM live_sessions WHERE log_id = ?').get(log.id) as { n: number }).n;
  }

  /** Marks an open log that was not sealed at the end of its session (shown by `logvm list`). */
  flagLog(log: LogRow, flag: string, now: number = Date.now()): void {
    this.db.prepare('INSERT OR REPLACE INTO log_flags (log_id, flag, time) VALUES (?, ?, ?)').run(log.id, flag, now);
  }

  /**
   * Appends the builder's entries to the log in one write transaction and
   * returns the committed block. Refuses (LOG_SEALED) when the log was sealed
   * meanwhile; nothing of the batch is stored then.
   */
  append(log: LogRow, builder: BlockBuilder | PendingBlock, opts: { endSession?: number; skipQuota?: boolean; cut?: SessionCut; now?: () => number } = {}): FinishedBlock {
    const run = this.db.transaction((): FinishedBlock | SealRefusal => {
      const claim = this.activeClaim(log, opts.now ?? Date.now);
      if (claim !== undefined) {
        // A seal in progress takes precedence: the batch is refused whole
        // (committed, the refusal is: the cut row and the end of the live
        // row), so the head the sealer signs cannot move.
        if (opts.cut !== undefined) {
          this.db
            .prepare('INSERT OR REPLACE INTO sealing_cuts (log_id, session, lines, bytes, refused) VALUES (?, ?, ?, ?, ?)')
            .run(log.id, opts.cut.session, opts.cut.lines, opts.cut.bytes, opts.cut.refused);
          this.q('DELETE FROM live_sessions WHERE log_id = ? AND session = ?').run(log.id, opts.cut.session);
        }
        return this.sealingRefusal(log, claim, 'is being sealed; the rest of this session is refused');
      }
      const head = this.getHead(log.id);
      if (head.sealed) return this.sealedRefusal(log, head, 'was sealed; the rest of this session is refused');
      // skipQuota: the few entries that record a quota refusal (its notice and
      // the close) and log-VM events; bounded per session, so no flood.
      if (builder.count > 0 && opts.skipQuota !== true) this.checkQuota(log, head, storedSize(builder));
      const block = this.insertBlock(log, head, builder, 0);
      if (opts.endSession !== undefined) this.q('DELETE FROM live_sessions WHERE log_id = ? AND session = ?').run(log.id, opts.endSession);
      return block;
    });
    let r: FinishedBlock | SealRefusal;
    try {
      r = run.immediate();
    } catch (e) {
      throw storeError(`cannot append to ${log.vm}/${log.name}`, e);
    }
    if (r instanceof SealRefusal) throw r;
    return r;
  }

  private sealedRefusal(log: LogRow, head: HeadRow, what: string): SealRefusal {
    const seal = this.getSeal(log.id);
    return new SealRefusal(`log ${log.vm}/${log.name} ${what}`, 'sealed', head.entries, head.head.toString('hex'), seal?.seal_index ?? null);
  }

  private sealingRefusal(log: LogRow, c: SealClaim, what: string): SealRefusal {
    return new SealRefusal(`log ${log.vm}/${log.name} ${what}`, 'sealing', c.entries, c.head.toString('hex'), c.seal_index);
  }

  // -------------------------------------------------------------------------
  // Seals in progress (docs/FORMAT.md 7.3)

  sealClaim(logId: number): SealClaim | undefined {
    return this.q('SELECT * FROM sealing WHERE log_id = ?').get(logId) as SealClaim | undefined;
  }

  /** Why a claim is stale (its sealer cannot commit any more, or took too long), or null. */
  claimStale(c: SealClaim, now: number): string | null {
    if (now - c.time > SEAL_CLAIM_STALE_MS) return `it was taken more than ${SEAL_CLAIM_STALE_MS / 60_000} minutes ago (by process ${c.pid})`;
    if (!processRunning(c.pid, c.start)) return `its process ${c.pid} no longer runs (killed or crashed)`;
    return null;
  }

  /**
   * Claims `log` for a seal, in one BEGIN IMMEDIATE transaction with the
   * snapshot it will sign: the head and the store's last seal. Refuses
   * LOG_SEALED and LOG_EMPTY. Stale claims (of any log) are cleared first,
   * and recorded. While another seal of the store is in progress the claim
   * is not taken: `busy` names it, and the caller waits (the seal chain is
   * linear, so one seal is signed at a time).
   */
  claimSeal(log: LogRow, now: () => number): { claim: SealClaim; head: HeadRow; prev: SealRow | undefined } | { busy: SealClaim & { vm: string; name: string } } {
    const run = this.db.transaction(() => {
      for (const c of this.db.prepare('SELECT * FROM sealing').all() as SealClaim[]) {
        const stale = this.claimStale(c, now());
        const other = this.db.prepare('SELECT id, vm, name, created, genesis FROM logs WHERE id = ?').get(c.log_id) as LogRow;
        if (stale === null) return { busy: { ...c, vm: other.vm, name: other.name } };
        this.releaseClaimIn(other, c, `the seal in progress was abandoned: ${stale}`, abandonedNotice(other, c, stale), now);
      }
      const head = this.getHead(log.id);
      if (head.sealed) throw new AppendlogError('LOG_SEALED', `log ${log.vm}/${log.name} is already sealed`);
      if (head.lines === 0) throw new AppendlogError('LOG_EMPTY', `log ${log.vm}/${log.name} has no lines; refusing to seal an empty log`);
      const prev = this.latestSeal();
      const claim: SealClaim = {
        log_id: log.id,
        token: randomBytes(16).toString('hex'),
        pid: process.pid,
        start: processStart(process.pid),
        time: now(),
        entries: head.entries,
        head: head.head,
        seal_index: (prev?.seal_index ?? 0) + 1,
      };
      this.db
        .prepare('INSERT INTO sealing (log_id, token, pid, start, time, entries, head, seal_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(claim.log_id, claim.token, claim.pid, claim.start, claim.time, claim.entries, claim.head, claim.seal_index);
      this.db.prepare('DELETE FROM sealing_cuts WHERE log_id = ?').run(log.id);
      return { claim, head, prev };
    });
    try {
      return run.immediate();
    } catch (e) {
      throw storeError(`cannot claim ${log.vm}/${log.name} for its seal`, e);
    }
  }

  /**
   * A failed seal gives the log back: in one transaction the claim is
   * removed (if it is still `token`'s), the sessions it cut are closed with
   * reason `error`, and `notice` (seal-failed) is chained in
   * VM/logvm-events. Returns how many sessions were closed, or null when the
   * claim was not this seal's any more (cleared as stale meanwhile).
   */
  releaseSeal(log: LogRow, token: string, why: string, notice: Record<string, CanonicalValue>, now: () => number = Date.now): number | null {
    const run = this.db.transaction(() => {
      const c = this.sealClaim(log.id);
      if (c === undefined || c.token !== token) return null;
      return this.releaseClaimIn(log, c, why, notice, now);
    });
    try {
      return run.immediate();
    } catch (e) {
      throw storeError(`cannot release the seal claim on ${log.vm}/${log.name}`, e);
    }
  }

  /** Inside a write transaction: the claim on `log` that still holds, after clearing a stale one (recorded). */
  private activeClaim(log: LogRow, now: () => number): SealClaim | undefined {
    const c = this.sealClaim(log.id);
    if (c === undefined) return undefined;
    const stale = this.claimStale(c, now());
    if (stale === null) return c;
    this.releaseClaimIn(log, c, `the seal in progress was abandoned: ${stale}`, abandonedNotice(log, c, stale), now);
    return undefined;
  }

  /**
   * Inside a write transaction: removes the claim, writes a close (reason
   * `error`, 3.5 (b): their batch could not be committed) for each session
   * it cut, in the log's own chain, and chains `notice` in VM/logvm-events.
   */
  private releaseClaimIn(log: LogRow, _c: SealClaim, why: string, notice: Record<string, CanonicalValue>, now: () => number): number {
    this.db.prepare('DELETE FROM sealing WHERE log_id = ?').run(log.id);
    const cuts = this.db.prepare('SELECT session, lines, bytes, refused FROM sealing_cuts WHERE log_id = ? ORDER BY session').all(log.id) as SessionCut[];
    if (cuts.length > 0) {
      const builder = new BlockBuilder(4096);
      for (const cut of cuts) {
        builder.add(now(), cut.session, Kind.SESSION_CLOSE, 0, canonicalBytes({
          reason: 'error',
          session: cut.session,
          lines: cut.lines,
          bytes: cut.bytes,
          detail: `${cut.refused}; ${why}; the log is open again`,
        }));
      }
      this.insertBlock(log, this.getHead(log.id), builder, 0);
      this.db.prepare('DELETE FROM sealing_cuts WHERE log_id = ?').run(log.id);
    }
    try {
      // A savepoint inside this transaction: the release and its record commit together.
      this.recordEvents(log.vm, [{ ...notice, sessions: cuts.length }], now);
    } catch {
      // The events log itself cannot take it (sealed, or being sealed): the release stands.
    }
    return cuts.length;
  }

  /**
   * Inside a transaction: refuses a batch that would take the log or its VM
   * past a quota (`adding` 0: opening a session, refused once at the quota).
   */
  private checkQuota(log: LogRow, _head: HeadRow, adding: number): void {
    const over = (stored: number, quota: number): boolean => (adding === 0 ? stored >= quota : stored + adding > quota);
    this.fillUsage(log.vm);
    const logBytes = this.storedBytes(log.id);
    if (over(logBytes, this.quotas.logBytes)) {
      throw new AppendlogError('QUOTA_EXCEEDED', `log ${log.vm}/${log.name} ${adding === 0 ? 'is at' : 'would exceed'} its quota of ${this.quotas.logBytes} stored bytes (${logBytes} stored)`);
    }
    const vmBytes = (this.q('SELECT COALESCE(SUM(u.stored), 0) AS b FROM usage u JOIN logs l ON l.id = u.log_id WHERE l.vm = ?').get(log.vm) as { b: number }).b;
    if (over(vmBytes, this.quotas.vmBytes)) {
      throw new AppendlogError('QUOTA_EXCEEDED', `VM ${log.vm} ${adding === 0 ? 'is at' : 'would exceed'} its quota of ${this.quotas.vmBytes} bytes over all its logs (${vmBytes} stored)`);
    }
  }

  /** Forgets a live session row (the session ended without a close entry, e.g. sealed under it). */
  endLive(log: LogRow, session: number): void {
    try {
      this.q('DELETE FROM live_sessions WHERE log_id = ? AND session = ?').run(log.id, session);
    } catch {
      // best effort: at worst the next session records it as lost
    }
  }

  /**
   * Inside the open transaction: refuses a session when the VM already has
   * `limit` live sessions. Every service process is its own qrexec call, so
   * they are counted in live_sessions (shared by all processes), and only
   * rows whose process is still running count: a killed service does not
   * lock its VM out (its row becomes a `lost` close at that log's next open).
   */
  private checkSessionLimit(vm: string, limit: number): void {
    const rows = this.db
      .prepare('SELECT ls.pid FROM live_sessions ls JOIN logs l ON l.id = ls.log_id WHERE l.vm = ? AND l.name != ?')
      .all(vm, EVENTS_LOG_NAME) as Array<{ pid: number }>;
    // Processes of the VM still sealing at the end of their session hold their slot (holdSessionSlot).
    const closing = this.db.prepare('SELECT id, pid, start FROM closing WHERE vm = ?').all(vm) as Array<{ id: number; pid: number; start: string | null }>;
    for (const c of closing) if (!processRunning(c.pid, c.start)) this.db.prepare('DELETE FROM closing WHERE id = ?').run(c.id);
    // Processes, not rows: one that holds a slot twice (qubesbuilder.BuildLog's end and its seal) counts once.
    const live = new Set([
      ...rows.filter((r) => r.pid !== process.pid && processAlive(r.pid)).map((r) => r.pid),
      ...closing.filter((c) => c.pid !== process.pid && processRunning(c.pid, c.start)).map((c) => c.pid),
    ]).size;
    if (live >= limit) {
      throw new AppendlogError('SESSION_LIMIT', `VM ${vm} already has ${live} session(s) open, the most the log VM allows at once (${limit}); this session was refused`);
    }
  }

  /**
   * A service process about to seal at the end of its session (sealOnClose)
   * keeps a slot of its VM's session limit until it ends: waiting for the
   * store's one seal at a time, signing, exporting. Returns the row to
   * release.
   */
  holdSessionSlot(vm: string): number {
    try {
      return Number(this.db.prepare('INSERT INTO closing (vm, pid, start) VALUES (?, ?, ?)').run(vm, process.pid, processStart(process.pid)).lastInsertRowid);
    } catch (e) {
      throw storeError(`cannot record the seal at the end of a session of ${vm}`, e);
    }
  }

  releaseSessionSlot(id: number): void {
    try {
      this.db.prepare('DELETE FROM closing WHERE id = ?').run(id);
    } catch {
      // best effort: a row whose process is gone does not count
    }
  }

  /** Stored bytes of a log (after fillUsage). */
  storedBytes(logId: number): number {
    return (this.q('SELECT stored FROM usage WHERE log_id = ?').get(logId) as { stored: number } | undefined)?.stored ?? 0;
  }

  /**
   * Inside a transaction: gives every log of `vm` (or all) a usage row,
   * counted from its blocks once for a store made before the table existed.
   */
  private fillUsage(vm?: string): void {
    this
      .q(
        `INSERT INTO usage (log_id, stored)
           SELECT l.id, COALESCE((SELECT SUM(length(b.data) + length(b.hashes)) FROM blocks b WHERE b.log_id = l.id), 0)
             FROM logs l WHERE (? IS NULL OR l.vm = ?) AND l.id NOT IN (SELECT log_id FROM usage)`,
      )
      .run(vm ?? null, vm ?? null);
  }

  /** Inside a transaction: numbers, chains and inserts the batch; moves the head. */
  insertBlock(log: LogRow, head: HeadRow, batch: BlockBuilder | PendingBlock, newSessions: number, sealed = 0): FinishedBlock {
    this.fillUsage(log.vm);
    const block = chainedOnto(batch, head);
    this.q('INSERT INTO usage (log_id, stored) VALUES (?, ?) ON CONFLICT (log_id) DO UPDATE SET stored = stored + excluded.stored').run(
      log.id,
      block.data.length + block.hashes.length,
    );
    this.q('INSERT INTO blocks (log_id, first_seq, count, first_time, last_time, data, hashes) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      log.id,
      block.firstSeq,
      block.count,
      block.firstTime,
      block.lastTime,
      block.data,
      block.hashes,
    );
    this
      .q('UPDATE heads SET entries = ?, lines = ?, bytes = ?, sessions = ?, head = ?, last_time = ?, sealed = ? WHERE log_id = ?')
      .run(
        head.entries + block.count,
        head.lines + block.lines,
        head.bytes + block.lineBytes,
        head.sessions + newSessions,
        block.head,
        block.lastTime,
        sealed,
        log.id,
      );
    return block;
  }

  listLogs(): LogSummary[] {
    const rows = this.db
      .prepare(
        `SELECT l.vm, l.name, l.created, h.entries, h.lines, h.bytes, h.sessions, h.head, h.last_time, h.sealed,
                (SELECT first_time FROM blocks b WHERE b.log_id = l.id ORDER BY first_seq LIMIT 1) AS first_time,
                f.flag
           FROM logs l JOIN heads h ON h.log_id = l.id LEFT JOIN log_flags f ON f.log_id = l.id
          ORDER BY l.vm, l.name`,
      )
      .all() as Array<HeadRow & { vm: string; name: string; created: number; first_time: number | null; flag: string | null }>;
    return rows.map((r) => ({
      vm: r.vm,
      name: r.name,
      state: r.sealed ? 'sealed' : 'open',
      entries: r.entries,
      lines: r.lines,
      bytes: r.bytes,
      sessions: r.sessions,
      created: r.created,
      firstTime: r.first_time,
      lastTime: r.last_time,
      head: r.head.toString('hex'),
      // A flag is about an open log; once the admin seals it, it is history.
      flag: r.sealed ? null : r.flag,
    }));
  }

  /** Blocks of a log in seq order, starting with the one holding `fromSeq`. */
  *blocks(logId: number, fromSeq = 1): Generator<BlockRow> {
    const start = this.db
      .prepare('SELECT first_seq FROM blocks WHERE log_id = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1')
      .get(logId, fromSeq) as { first_seq: number } | undefined;
    const stmt = this.db.prepare(
      'SELECT id, first_seq, count, first_time, last_time, data, hashes FROM blocks WHERE log_id = ? AND first_seq >= ? ORDER BY first_seq',
    );
    yield* stmt.iterate(logId, start?.first_seq ?? 1) as Iterable<BlockRow>;
  }

  /**
   * Bytes of entry encodings and number of entries in a log's block rows.
   * SQLite reads a blob's length from its record header, not its pages, so
   * this costs no pass over the data: export sizes its archive member with it.
   */
  blockTotals(logId: number): { bytes: number; count: number } {
    const r = this.db.prepare('SELECT coalesce(sum(length(data)), 0) AS bytes, coalesce(sum(count), 0) AS count FROM blocks WHERE log_id = ?').get(logId) as {
      bytes: number;
      count: number;
    };
    return { bytes: Number(r.bytes), count: Number(r.count) };
  }

  getSeal(logId: number): SealRow | undefined {
    return this.db.prepare('SELECT * FROM seals WHERE log_id = ?').get(logId) as SealRow | undefined;
  }

  latestSeal(): SealRow | undefined {
    return this.db.prepare('SELECT * FROM seals ORDER BY seal_index DESC LIMIT 1').get() as SealRow | undefined;
  }

  /** All seals in store order: the chain of seals. */
  *seals(): Generator<SealRow> {
    yield* this.db.prepare('SELECT * FROM seals ORDER BY seal_index').iterate() as Iterable<SealRow>;
  }

  signatures(sealIndex: number): string[] {
    return (
      this.db.prepare('SELECT armored FROM signatures WHERE seal_index = ? ORDER BY n').all(sealIndex) as Array<{ armored: string }>
    ).map((r) => r.armored);
  }
}

/** What a batch will add to the store: its entries (headers and payloads) and a 32-byte hash each. */
function storedSize(batch: BlockBuilder | PendingBlock): number {
  const builder = isPending(batch) ? batch.builder : batch;
  return builder.byteLength + 32 * builder.count;
}

/** A batch hashed ahead (BlockBuilder.start) rather than a builder (by shape: one copy of the shared code or another). */
function isPending(batch: BlockBuilder | PendingBlock): batch is PendingBlock {
  return typeof (batch as Partial<PendingBlock>).join === 'function';
}

/**
 * The batch numbered and chained onto `head`: a pending block hashed ahead
 * of the transaction (ingest's pipeline) is used as it is when it was
 * chained onto this very head, else (another session's batch came first,
 * or a seal) its builder is numbered and chained again, here.
 */
function chainedOnto(batch: BlockBuilder | PendingBlock, head: HeadRow): FinishedBlock {
  if (!isPending(batch)) return batch.finish(head.entries + 1, head.head);
  const block = batch.join();
  if (block.firstSeq === head.entries + 1 && batch.prev.equals(head.head)) return block;
  return batch.builder.finish(head.entries + 1, head.head);
}

/** The seal-abandoned notice of a stale claim (docs/FORMAT.md 13.5). */
function abandonedNotice(log: LogRow, c: SealClaim, stale: string): Record<string, CanonicalValue> {
  return {
    notice: 'seal-abandoned',
    log: `${log.vm}/${log.name}`,
    head: c.head.toString('hex'),
    pid: c.pid,
    since: c.time,
    detail: `the claim of a seal in progress was cleared: ${stale}`,
  };
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or null without /proc. */
function processStart(pid: number): string | null {
  const stat = procStat(pid);
  return stat === null ? null : (stat[19] ?? null);
}

/** The fields of /proc/PID/stat after the command name (field 3 first), or null. */
function procStat(pid: number): string[] | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * Whether the process that took a claim still runs: the pid exists, is not
 * a zombie, and (when /proc told us at claim time) started when it did,
 * so a reused pid does not keep a dead seal's claim alive.
 */
function processRunning(pid: number, start: string | null): boolean {
  if (!processAlive(pid)) return false;
  if (pid === process.pid) return start === null || start === processStart(pid);
  const stat = procStat(pid);
  if (stat === null) return true; // no /proc: kill(pid, 0) is all we know
  if (stat[0] === 'Z' || stat[0] === 'X') return false;
  return start === null || stat[19] === start;
}

/** Whether a service process is still running (kill 0 checks existence; EPERM means it is). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
