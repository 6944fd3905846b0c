import type { ClaimedFile, SealManifest } from './manifest.js';

/**
 * M of N independent builders (docs/FORMAT.md section 12): pure logic over
 * evidences whose signatures the caller has already evaluated. Each builder
 * is one trusted certificate; it agrees when a log it validly sealed claims
 * the file's SHA-256 as an artifact. One certificate counts once, however
 * many evidences it sealed.
 */
export type ArtifactStatus = 'same' | 'different' | 'absent';

export interface Certificate {
  /** Primary fingerprint, upper-case hex. */
  fingerprint: string;
  userIds: string[];
}

/** One evidence as the caller loaded and checked it. */
export interface CheckedEvidence {
  /** The path given on the command line. */
  source: string;
  /** `evidence`: the signed summary only; `bundle`: the whole chain was re-checked. */
  kind: 'evidence' | 'bundle';
  manifest?: SealManifest;
  /** Trusted certificates whose signature over the manifest counted. */
  signers: Certificate[];
  /** Issuers of signatures that did not count (not trusted, or refused by policy). */
  ignored: string[];
  /** Why the evidence cannot be used at all (malformed, manifest edited, chain broken). */
  error?: { code: string; message: string };
}

export interface InputDifference {
  path: string;
  /** This build's SHA-256 for the path, or null if it has no such input. */
  sha256: string | null;
  /** The majority's, or null if most builders have no such input. */
  majority: string | null;
}

export interface BuilderEvidence {
  source: string;
  /** The manifest's genesis and seal index: the same log sealed (or cosigned) by several builders has the same `logId`. */
  logId: string;
  kind: 'evidence' | 'bundle';
  log: string;
  sealed: number;
  artifact: ArtifactStatus;
  /** The claimed artifact: the match, or for `different` the one with the same file name. */
  claimed: ClaimedFile | null;
  inputs: 'same' | 'different';
  inputDifferences: InputDifference[];
  verifiedInputs: number;
  rejectedInputs: number;
  exit: { code: number | null; signal: string | null } | null;
}

export interface BuilderRow extends Certificate {
  evidences: BuilderEvidence[];
  agrees: boolean;
}

export interface QuorumResult {
  file: { name: string; sha256: string; size: number };
  threshold: number;
  builders: BuilderRow[];
  agreeing: number;
  met: boolean;
  /** Evidences no trusted builder counts for (unusable, or signed only by other keys). */
  uncounted: CheckedEvidence[];
}

const baseName = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** What a build said it read: plain inputs, then signature-checked ones (which take precedence for a path). */
export function inputsOf(m: SealManifest): Map<string, string> {
  const out = new Map<string, string>();
  const c = m.claims;
  if (c === undefined) return out;
  for (const f of c.inputs) out.set(f.path, f.sha256);
  for (const f of c.verifiedInputs ?? []) out.set(f.path, f.sha256);
  for (const f of c.rejectedInputs ?? []) out.set(f.path, f.sha256 ?? 'unreadable');
  return out;
}

/** Per path, the SHA-256 most of the given builds hold (null: most have no such input). Ties go to the earliest build. */
export function majorityInputs(builds: Array<Map<string, string>>): Map<string, string | null> {
  const paths = new Set<string>();
  for (const b of builds) for (const p of b.keys()) paths.add(p);
  const out = new Map<string, string | null>();
  for (const p of [...paths].sort()) {
    const votes = new Map<string | null, number>();
    for (const b of builds) {
      const v = b.get(p) ?? null;
      votes.set(v, (votes.get(v) ?? 0) + 1);
    }
    let best: string | null = null;
    let n = -1;
    for (const [v, k] of votes) {
      if (k > n) {
        best = v;
        n = k;
      }
    }
    out.set(p, best);
  }
  return out;
}

export function artifactStatus(m: SealManifest, file: { name: string; sha256: string }): { status: ArtifactStatus; claimed: ClaimedFile | null } {
  const arts = m.claims?.artifacts ?? [];
  const hit = arts.find((a) => a.sha256 === file.sha256);
  if (hit !== undefined) return { status: 'same', claimed: hit };
  const named = arts.find((a) => baseName(a.path) === file.name);
  if (named !== undefined) return { status: 'different', claimed: named };
  return { status: 'absent', claimed: null };
}

export function evaluateQuorum(input: {
  file: { name: string; sha256: string; size: number };
  threshold: number;
  /** The N builders: the trusted (pinned) certificates. */
  builders: Certificate[];
  evidences: CheckedEvidence[];
}): QuorumResult {
  const rows = new Map<string, BuilderRow>();
  for (const b of input.builders) rows.set(b.fingerprint, { ...b, evidences: [], agrees: false });
  const uncounted: CheckedEvidence[] = [];
  const byBuilder = new Map<string, CheckedEvidence[]>();
  for (const e of input.evidences) {
    const counted = e.error === undefined && e.manifest !== undefined ? e.signers.filter((s) => rows.has(s.fingerprint)) : [];
    if (counted.length === 0) {
      uncounted.push(e);
      continue;
    }
    for (const s of counted) byBuilder.set(s.fingerprint, [...(byBuilder.get(s.fingerprint) ?? []), e]);
  }
  // The majority's inputs, one vote per builder: its evidence that claims the
  // file if any, else its first.
  const primary = new Map<string, SealManifest>();
  for (const [fpr, list] of byBuilder) {
    const pick = list.find((e) => artifactStatus(e.manifest!, input.file).status === 'same') ?? list[0]!;
    primary.set(fpr, pick.manifest!);
  }
  const majority = majorityInputs([...primary.values()].map(inputsOf));
  for (const [fpr, list] of byBuilder) {
    const row = rows.get(fpr)!;
    for (const e of list) {
      const m = e.manifest!;
      const { status, claimed } = artifactStatus(m, input.file);
      const mine = inputsOf(m);
      const diffs: InputDifference[] = [];
      for (const [path, maj] of majority) {
        const v = mine.get(path) ?? null;
        if (v !== maj) diffs.push({ path, sha256: v, majority: maj });
      }
      row.evidences.push({
        source: e.source,
        logId: `${m.genesis}:${m.sealIndex}`,
        kind: e.kind,
        log: `${m.vm}/${m.name}`,
        sealed: m.sealed,
        artifact: status,
        claimed,
        inputs: diffs.length === 0 ? 'same' : 'different',
        inputDifferences: diffs,
        verifiedInputs: (m.claims?.verifiedInputs?.length ?? 0) + (m.claims?.omitted?.verifiedInputs ?? 0),
        rejectedInputs: (m.claims?.rejectedInputs?.length ?? 0) + (m.claims?.omitted?.rejectedInputs ?? 0),
        exit: m.claims?.exit ?? null,
      });
      if (status === 'same') row.agrees = true;
    }
  }
  const builders = [...rows.values()];
  const agreeing = builders.filter((b) => b.agrees).length;
  return { file: input.file, threshold: input.threshold, builders, agreeing, met: agreeing >= input.threshold, uncounted };
}

// ---------------------------------------------------------------------------
// compare

export interface CompareColumn {
  label: string;
  log: string;
  sealed: number;
  hostname: string | null;
  command: string[] | null;
  exit: { code: number | null; signal: string | null } | null;
}

export interface CompareRow {
  path: string;
  /** Per build: what it claimed for the path, or null. */
  values: Array<(ClaimedFile & { signer?: string; rejected?: string }) | null>;
  differs: boolean;
}

export interface Comparison {
  columns: CompareColumn[];
  inputs: CompareRow[];
  artifacts: CompareRow[];
  commandDiffers: boolean;
  exitDiffers: boolean;
  identical: boolean;
}

const fileKey = (f: { sha256: string | null; size: number | null; signer?: string; rejected?: string } | null): string =>
  f === null ? '-' : `${f.sha256}:${f.size}:${f.signer ?? ''}:${f.rejected ?? ''}`;

function rowsOf(lists: Array<Map<string, CompareRow['values'][number]>>): CompareRow[] {
  const paths = new Set<string>();
  for (const l of lists) for (const p of l.keys()) paths.add(p);
  return [...paths].sort().map((path) => {
    const values = lists.map((l) => l.get(path) ?? null);
    return { path, values, differs: new Set(values.map(fileKey)).size > 1 };
  });
}

/** The claims of several builds side by side: where a non-reproducible or subverted build parts from the others. */
export function compareBuilds(builds: Array<{ label: string; manifest: SealManifest }>): Comparison {
  const inputs: Array<Map<string, CompareRow['values'][number]>> = [];
  const artifacts: Array<Map<string, CompareRow['values'][number]>> = [];
  for (const { manifest: m } of builds) {
    const ins = new Map<string, CompareRow['values'][number]>();
    for (const f of m.claims?.inputs ?? []) ins.set(f.path, { ...f });
    for (const f of m.claims?.verifiedInputs ?? []) ins.set(f.path, { ...f });
    for (const f of m.claims?.rejectedInputs ?? []) ins.set(f.path, { path: f.path, sha256: f.sha256 ?? '', size: f.size ?? 0, rejected: f.code });
    inputs.push(ins);
    const arts = new Map<string, CompareRow['values'][number]>();
    for (const f of m.claims?.artifacts ?? []) arts.set(f.path, { ...f });
    artifacts.push(arts);
  }
  const columns = builds.map(({ label, manifest: m }) => ({
    label,
    log: `${m.vm}/${m.name}`,
    sealed: m.sealed,
    hostname: m.claims?.hostname ?? null,
    command: m.claims?.command ?? null,
    exit: m.claims?.exit ?? null,
  }));
  const inRows = rowsOf(inputs);
  const artRows = rowsOf(artifacts);
  const commandDiffers = new Set(columns.map((c) => JSON.stringify(c.command))).size > 1;
  const exitDiffers = new Set(columns.map((c) => JSON.stringify(c.exit))).size > 1;
  return {
    columns,
    inputs: inRows,
    artifacts: artRows,
    commandDiffers,
    exitDiffers,
    identical: !commandDiffers && !exitDiffers && !inRows.some((r) => r.differs) && !artRows.some((r) => r.differs),
  };
}
