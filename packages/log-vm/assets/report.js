// appendlog report viewer. Runs under a strict CSP (this script by hash, no
// other script, no network). Every string that came from the log or the
// bundle is attacker-controlled: it only ever becomes a Text node (append of
// a string, textContent) or the value of a `title` attribute; nothing is
// parsed as HTML (innerHTML, insertAdjacentHTML, document.write are never
// used, and Trusted Types with no policy would refuse them anyway).
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($('report-data').textContent);
  const index = JSON.parse($('log-index').textContent);
  const app = $('app');

  /** An element with constant attributes; children are nodes or strings (become Text nodes). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        if (attrs[k] === undefined || attrs[k] === null) continue;
        if (k === 'class') e.className = attrs[k];
        else e.setAttribute(k, String(attrs[k]));
      }
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
    return e;
  }
  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
    for (const c of children) if (c !== null && c !== undefined) e.append(typeof c === 'string' ? c : c);
    return e;
  }
  const iso = (ms) => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString());
  const num = (n) => (n === null || n === undefined ? '-' : Number(n).toLocaleString('en-US'));
  const dur = (ms) => {
    if (ms === null || ms === undefined || !isFinite(ms)) return '-';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 7200000) return `${(ms / 60000).toFixed(1)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  };
  const bytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : n < 1073741824 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1073741824).toFixed(2)} GiB`);

  // -------------------------------------------------------------------------
  // Display text: `logvm show`'s escaped form. `\\` is a backslash, `\x3c` a
  // `<` (written that way so the embedded text holds no `<`), `\e[...m` an
  // SGR colour sequence, any other escape a control, bidi override or invalid
  // byte made visible. Rendered into `parent` as styled spans of Text nodes.
  const TOKEN = /\\(?:\\|x3c|e\[([0-9;:]*)m|e|r|0|x[0-9a-f]{2}|u[0-9a-f]{4})/g;
  function xterm256(n) {
    if (n < 16) return null;
    if (n >= 232) {
      const v = 8 + (n - 232) * 10;
      return `rgb(${v},${v},${v})`;
    }
    const c = n - 16;
    const lv = (x) => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${lv(Math.floor(c / 36))},${lv(Math.floor(c / 6) % 6)},${lv(c % 6)})`;
  }
  function sgr(st, params) {
    const p = params === '' ? [0] : params.split(/[;:]/).map((x) => (x === '' ? 0 : Number(x)));
    for (let i = 0; i < p.length; i++) {
      const c = p[i];
      if (c === 0) Object.assign(st, { fg: null, bg: null, fgRgb: null, bgRgb: null, b: false, d: false, i: false, u: false, s: false, inv: false });
      else if (c === 1) st.b = true;
      else if (c === 2) st.d = true;
      else if (c === 3) st.i = true;
      else if (c === 4) st.u = true;
      else if (c === 7) st.inv = true;
      else if (c === 9) st.s = true;
      else if (c === 22) st.b = st.d = false;
      else if (c === 23) st.i = false;
      else if (c === 24) st.u = false;
      else if (c === 27) st.inv = false;
      else if (c === 29) st.s = false;
      else if (c >= 30 && c <= 37) (st.fg = c - 30), (st.fgRgb = null);
      else if (c === 39) st.fg = st.fgRgb = null;
      else if (c >= 40 && c <= 47) (st.bg = c - 40), (st.bgRgb = null);
      else if (c === 49) st.bg = st.bgRgb = null;
      else if (c >= 90 && c <= 97) (st.fg = c - 90 + 8), (st.fgRgb = null);
      else if (c >= 100 && c <= 107) (st.bg = c - 100 + 8), (st.bgRgb = null);
      else if (c === 38 || c === 48) {
        let rgb = null;
        let idx = null;
        if (p[i + 1] === 5 && i + 2 < p.length) {
          const n = p[i + 2] & 255;
          if (n < 16) idx = n;
          else rgb = xterm256(n);
          i += 2;
        } else if (p[i + 1] === 2 && i + 4 < p.length) {
          rgb = `rgb(${p[i + 2] & 255},${p[i + 3] & 255},${p[i + 4] & 255})`;
          i += 4;
        }
        if (c === 38) (st.fg = idx), (st.fgRgb = rgb);
        else (st.bg = idx), (st.bgRgb = rgb);
      }
    }
  }
  function styled(st, text) {
    let fg = st.fg;
    let bg = st.bg;
    let fgRgb = st.fgRgb;
    let bgRgb = st.bgRgb;
    if (st.inv) [fg, bg, fgRgb, bgRgb] = [bg === null && bgRgb === null ? 0 : bg, fg === null && fgRgb === null ? 7 : fg, bgRgb, fgRgb];
    const cls = [];
    if (fg !== null && fg !== undefined) cls.push(`f${fg}`);
    if (bg !== null && bg !== undefined) cls.push(`g${bg}`);
    for (const k of ['b', 'd', 'i', 'u', 's']) if (st[k]) cls.push(k);
    if (cls.length === 0 && !fgRgb && !bgRgb) return document.createTextNode(text);
    const s = document.createElement('span');
    s.className = cls.join(' ');
    // CSSOM, not a style attribute: the values are built from numbers above.
    if (fgRgb) s.style.color = fgRgb;
    if (bgRgb) s.style.backgroundColor = bgRgb;
    s.textContent = text;
    return s;
  }
  /** Renders display text into `parent`; `marks` is a list of [from, to) ranges of the plain text to highlight. */
  function renderText(parent, text, marks) {
    const st = { fg: null, bg: null, fgRgb: null, bgRgb: null, b: false, d: false, i: false, u: false, s: false, inv: false };
    let plainPos = 0;
    const out = (node, len) => {
      parent.append(node);
      plainPos += len;
    };
    const emit = (str, esc) => {
      if (str === '') return;
      if (marks && marks.length) {
        // Split at mark boundaries, in plain-text coordinates.
        let k = 0;
        while (k < str.length) {
          const at = plainPos;
          const m = marks.find((r) => r[1] > at && r[0] < at + (str.length - k));
          if (!m) break;
          if (m[0] > at) {
            const n = m[0] - at;
            out(esc ? escNode(str.substr(k, n)) : styled(st, str.substr(k, n)), n);
            k += n;
            continue;
          }
          const n = Math.min(m[1], at + str.length - k) - at;
          const mk = document.createElement('mark');
          mk.append(esc ? escNode(str.substr(k, n)) : styled(st, str.substr(k, n)));
          out(mk, n);
          k += n;
        }
        if (k < str.length) out(esc ? escNode(str.slice(k)) : styled(st, str.slice(k)), str.length - k);
        return;
      }
      out(esc ? escNode(str) : styled(st, str), str.length);
    };
    let last = 0;
    TOKEN.lastIndex = 0;
    let m;
    while ((m = TOKEN.exec(text)) !== null) {
      emit(text.slice(last, m.index), false);
      last = TOKEN.lastIndex;
      const t = m[0];
      if (t === '\\x3c') emit('<', false);
      else if (m[1] !== undefined) sgr(st, m[1]);
      else if (t === '\\\\') emit('\\\\', false);
      else emit(t, true);
    }
    emit(text.slice(last), false);
  }
  function escNode(t) {
    const s = document.createElement('span');
    s.className = 'esc';
    s.textContent = t;
    return s;
  }
  /** The text a reader sees (what search matches): SGR removed, `\x3c` as `<`. */
  function plainOf(text) {
    if (text.indexOf('\\') < 0) return text;
    return text.replace(TOKEN, (t, p) => (t === '\\x3c' ? '<' : p !== undefined ? '' : t));
  }

  // -------------------------------------------------------------------------
  // The log: one line per embedded entry, "MF text" (stream mark, flag mark).
  let lines = [];
  let plain = null;
  const segStart = []; // index of each segment's first line
  {
    let acc = 0;
    for (const [, count] of index.segments) {
      segStart.push(acc);
      acc += count;
    }
  }
  function seqOf(i) {
    let lo = 0;
    let hi = segStart.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segStart[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return index.segments[lo][0] + (i - segStart[lo]);
  }
  /** Line index of `seq`, or -(nearest following index + 1) when it is not embedded. */
  function indexOfSeq(seq) {
    for (let s = 0; s < index.segments.length; s++) {
      const [first, count] = index.segments[s];
      if (seq < first) return -(segStart[s] + 1);
      if (seq < first + count) return segStart[s] + (seq - first);
    }
    return -(lines.length + 1);
  }
  const timeIdx = [];
  const timeVal = [];
  {
    let i = 0;
    let t = 0;
    for (let k = 0; k + 1 < index.times.length; k += 2) {
      i += index.times[k];
      t += index.times[k + 1];
      timeIdx.push(i);
      timeVal.push(t);
    }
  }
  function timeOf(i) {
    let lo = 0;
    let hi = timeIdx.length - 1;
    if (hi < 0) return null;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (timeIdx[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return timeVal[lo];
  }

  // -------------------------------------------------------------------------
  // First screen
  const v = data.verdict;
  document.title = `${v.ok ? 'OK' : 'FAIL'} ${v.log || ''} - appendlog report`;
  app.append(
    el('h1', null, 'Build log report: ', el('span', { class: 'mono', id: 'log-name' }, v.log || '(unknown log)')),
    el('div', { class: 'sub' }, `${data.source.kind === 'bundle' ? 'bundle' : 'log VM store'} ${data.source.label} · report made ${iso(data.generated)} by ${data.generator}`),
  );

  function fact(dl, k, ...val) {
    dl.append(el('dt', null, k), el('dd', null, ...val));
  }
  function wideFact(dl, k, ...val) {
    dl.append(el('dt', { class: 'wide' }, k), el('dd', { class: 'wide' }, ...val));
  }
  {
    const box = el('section', { id: 'verdict', class: v.ok ? 'verdict' : 'verdict bad', 'data-ok': String(v.ok), 'data-code': v.code || '' });
    const head = v.ok
      ? `VERIFIED: chain intact${v.state === 'sealed' ? ' and sealed' : ', not sealed'}${v.signaturesChecked ? `, signed by ${v.signers.length} trusted key(s), ${v.threshold} required` : ''}`
      : `FAILED: ${v.code}${v.seq !== null && v.seq !== undefined ? ` at seq ${v.seq}` : ''}`;
    box.append(el('div', { class: 'headline', id: 'verdict-headline' }, head));
    if (!v.ok) {
      box.append(el('div', { class: 'message', id: 'verdict-message' }, v.message || ''));
      if (v.seq !== null && v.seq !== undefined) box.append(el('div', null, el('a', { href: `#L${v.seq}`, class: 'seq' }, `go to seq ${v.seq} in the log`)));
      box.append(el('div', { class: 'quiet' }, `verify-chain exit code ${v.exitCode}. Everything below comes from data that did not verify: read it as evidence, not as fact.`));
    }
    const dl = el('dl', { class: 'facts' });
    wideFact(dl, 'log', el('span', { class: 'mono' }, v.log || '-'));
    fact(dl, 'source VM', el('span', { class: 'mono' }, v.vm || '-'), ' (attested by the log VM via qrexec)');
    fact(dl, 'state', v.state || '-');
    if (v.entries !== undefined) fact(dl, 'entries', `${num(v.entries)} (${num(v.lines)} lines, ${bytes(v.bytes || 0)}, ${num(v.sessions)} sessions)`);
    if (v.created) fact(dl, 'created', iso(v.created));
    if (v.head) wideFact(dl, 'head', el('span', { class: 'mono' }, v.head));
    if (v.sealed) wideFact(dl, 'sealed', `${iso(v.sealed)} (seal #${v.sealIndex}${v.prevSeal ? `, after ${v.prevSeal}` : ', first seal'})`);
    wideFact(dl, 'threshold', v.signaturesChecked || !v.ok ? `${v.threshold} valid signature(s) by distinct trusted keys` : 'signatures not checked (no --key)');
    const keys = el('div', { id: 'keys' });
    for (const k of v.keys) keys.append(el('div', { class: 'mono' }, `${k.fingerprint} ${k.userIds.length ? k.userIds.join(', ') : '(no user ID bound)'} (${k.file})${k.pinned ? '' : ' not pinned by --signer: does not count'}`));
    if (v.keys.length === 0) keys.append('none given');
    wideFact(dl, 'trusted keys', keys);
    const signers = el('div', { id: 'signers' });
    for (const s of v.signers) signers.append(el('div', { class: 'mono signer' }, `${s.fingerprint} ${(s.userIds || []).join(', ')} (signed ${s.created || '?'}${s.hash ? `, ${s.hash}` : ''}, ${s.file})`));
    if (v.signers.length === 0) signers.append(v.signaturesChecked ? 'none' : '-');
    wideFact(dl, 'signed by', signers);
    if (v.notCounted && v.notCounted.length) {
      const nc = el('div', { id: 'not-counted' });
      for (const r of v.notCounted) nc.append(el('div', { class: 'mono' }, `${r.file}: ${r.code}: ${r.message}`));
      wideFact(dl, 'not counted', nc);
    }
    if (v.seals) wideFact(dl, 'seal chain', `${v.seals} seal(s) in the store, linked`);
    box.append(dl);
    app.append(box);
  }

  const top = el('div', { class: 'grid2' });
  app.append(top);
  // Look here first
  {
    const sec = el('section', { id: 'highlights' }, el('h2', null, 'Look here first'));
    const found = data.groups.filter((g) => g.count > 0);
    const ex = data.claims && data.claims.exit;
    if (ex && (ex.signal !== null || ex.code !== 0)) {
      sec.append(el('p', { class: 'exit-bad', id: 'exit-highlight' }, `The build ${ex.signal !== null ? `was killed by ${ex.signal}` : `exited with status ${ex.code}`} (claimed by the build VM).`));
    }
    if (data.readError) sec.append(el('p', { class: 'exit-bad' }, `The log could not be read to its end: ${data.readError}`));
    if (found.length === 0) sec.append(el('p', { class: 'quiet' }, 'No line matched any pattern, and nothing was written to stderr.'));
    for (const g of found) {
      const list = el('ol', { class: 'hits' });
      for (const h of g.hits) {
        const text = el('span', { class: 'hit-text' });
        renderText(text, h.text.slice(2));
        list.append(el('li', { 'data-seq': h.seq }, el('a', { href: `#L${h.seq}`, class: 'seq' }, String(h.seq).padStart(8)), ' ', text));
      }
      if (g.count > g.hits.length) list.append(el('li', { class: 'quiet' }, `… and ${num(g.count - g.hits.length)} more (search the log below)`));
      const d = el(
        'details',
        { class: `group ${g.id}`, 'data-group': g.id, 'data-count': g.count },
        el('summary', null, el('span', { class: 'count' }, num(g.count)), el('b', null, g.title), el('span', { class: 'why' }, g.why)),
        list,
      );
      if (found.indexOf(g) < 3 && g.id !== 'stderr') d.open = true;
      sec.append(d);
    }
    const none = data.groups.filter((g) => g.count === 0).map((g) => g.title);
    if (none.length) sec.append(el('p', { class: 'quiet' }, `No match: ${none.join(', ')}.`));
    top.append(sec);
  }

  // Claims
  {
    const c = data.claims;
    const sec = el('section', { id: 'claims' }, el('h2', null, 'Claims of the build VM'));
    if (!c) sec.append(el('p', { class: 'quiet' }, 'No claims: a raw log (no logsend), so no exit status or file hashes were sent.'));
    else {
      sec.append(el('p', { class: 'quiet' }, data.claimsSource));
      const dl = el('dl', { class: 'facts' });
      if (c.exit) {
        const bad = c.exit.signal !== null || c.exit.code !== 0;
        fact(dl, 'exit status', el('span', { id: 'exit-status', class: bad ? 'exit-bad' : 'exit-ok' }, c.exit.signal !== null ? `killed by ${c.exit.signal}` : String(c.exit.code)));
      } else fact(dl, 'exit status', el('span', { id: 'exit-status', class: 'exit-bad' }, 'none sent (the build did not finish under logsend)'));
      if (c.command) fact(dl, 'command', el('span', { class: 'mono' }, c.command.join(' ')));
      if (c.hostname) fact(dl, 'host', el('span', { class: 'mono' }, c.hostname));
      sec.append(dl);
      const files = (title, id, list, omitted) => {
        // "signed by": the signer of a verified input (logsend --verify-input), when there are any.
        const checked = list.some((f) => f.signer);
        const t = el('table', { id }, el('thead', null, el('tr', null, el('th', null, 'path'), el('th', null, 'size'), el('th', null, 'SHA-256'), checked ? el('th', null, 'signed by') : null)));
        const body = el('tbody');
        for (const f of list) body.append(el('tr', null, el('td', { class: 'path mono' }, f.path), el('td', { class: 'num' }, num(f.size)), el('td', { class: 'hash' }, f.sha256), checked ? el('td', { class: 'hash' }, f.signer || '') : null));
        t.append(body);
        sec.append(el('h3', null, `${title}: ${num(list.length + (omitted || 0))}`), list.length ? t : el('p', { class: 'quiet' }, 'none'));
        if (omitted) sec.append(el('p', { class: 'quiet' }, `${num(omitted)} more not listed in the sealed summary.`));
      };
      if (c.verifiedInputs) files('verified inputs (checked by the build VM before the build; signer fingerprint)', 'claims-verified', c.verifiedInputs, c.omitted ? c.omitted.verifiedInputs : 0);
      if (c.rejectedInputs && c.rejectedInputs.length) {
        const t = el('table', { id: 'claims-rejected', class: 'exit-bad' }, el('thead', null, el('tr', null, el('th', null, 'path'), el('th', null, 'code'), el('th', null, 'reason'))));
        const body = el('tbody');
        for (const r of c.rejectedInputs) body.append(el('tr', null, el('td', { class: 'path mono' }, r.path), el('td', null, r.code), el('td', null, r.reason)));
        t.append(body);
        sec.append(el('h3', { class: 'exit-bad' }, `REJECTED inputs: ${num(c.rejectedInputs.length)} failed verification, the build was not started`), t);
      }
      files('inputs', 'claims-inputs', c.inputs, c.omitted ? c.omitted.inputs : 0);
      files('artifacts', 'claims-artifacts', c.artifacts, c.omitted ? c.omitted.artifacts : 0);
      if (data.badClaims) sec.append(el('p', { class: 'exit-bad' }, `${num(data.badClaims)} claim entr${data.badClaims === 1 ? 'y' : 'ies'} could not be read (malformed).`));
    }
    top.append(sec);
  }

  // Pictures
  const pics = el('div', { class: 'grid2' });
  app.append(pics);
  {
    const sec = el('section', { id: 'timeline' }, el('h2', null, 'Sessions'));
    const ss = data.sessions;
    const W = 640;
    const rowH = 16;
    const shown = ss.slice(0, 60);
    const H = 30 + shown.length * rowH;
    const t0 = data.firstTime;
    const t1 = Math.max(data.lastTime || t0, t0 + 1);
    const x = (t) => 60 + ((t - t0) / (t1 - t0)) * (W - 80);
    // A lost session's close is written by the next session; it really ended with its last entry.
    const endOf = (s) => (s.reason === 'lost' && s.lastSeen !== null ? s.lastSeen : s.closeTime);
    const kind = (r) => (r === 'eof' || r === 'sealed' ? 'eof' : r === 'lost' || r === 'quota' ? 'lost' : r === 'refused' ? 'refused' : r === null ? 'open' : 'error');
    const colour = { eof: '#2da44e', error: '#bf8700', lost: '#cf222e', refused: '#8250df', open: '#54aeff' };
    const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'session timeline' });
    shown.forEach((s, i) => {
      const y = 8 + i * rowH;
      const a = s.openTime !== null ? s.openTime : s.closeTime !== null ? s.closeTime : t0;
      const b = endOf(s) !== null ? endOf(s) : data.lastTime;
      const k = kind(s.reason);
      const xa = x(a);
      const wdt = Math.max(3, x(b) - xa);
      const rect = svg('rect', { x: xa.toFixed(1), y, width: wdt.toFixed(1), height: rowH - 4, rx: 2, fill: colour[k], 'data-session': s.session, 'data-reason': s.reason || 'open', class: 'session' });
      rect.append(svg('title', {}, `session ${s.session}: opened ${iso(s.openTime)}${s.vm ? ` by ${s.vm}` : ''}, ${s.reason ? `closed ${iso(s.closeTime)}: ${s.reason}` : 'not closed'}${s.lines !== null ? `, ${s.lines} lines` : ''}${s.detail ? ` (${s.detail})` : ''}`));
      chart.append(svg('text', { x: 4, y: y + rowH - 6 }, `#${s.session}`), rect);
      if (k === 'lost' || k === 'refused') chart.append(svg('text', { x: (xa + wdt + 4).toFixed(1), y: y + rowH - 6 }, s.reason));
      const prev = shown[i - 1];
      if (prev && endOf(prev) !== null && s.openTime !== null && s.openTime - endOf(prev) > (t1 - t0) / 50) {
        chart.append(svg('text', { x: ((x(endOf(prev)) + xa) / 2).toFixed(1), y: y - 2, 'text-anchor': 'middle' }, `gap ${dur(s.openTime - endOf(prev))}`));
      }
    });
    chart.append(svg('text', { x: 60, y: H - 6 }, iso(t0)), svg('text', { x: W - 20, y: H - 6, 'text-anchor': 'end' }, `+${dur(t1 - t0)}`));
    sec.append(chart);
    sec.append(
      el('div', { class: 'legend' }, el('span', { class: 'sw eof' }), 'closed (eof)', el('span', { class: 'sw error' }), 'error / signal', el('span', { class: 'sw lost' }), 'lost / quota', el('span', { class: 'sw refused' }), 'refused'),
    );
    const t = el('table', { id: 'sessions-table' }, el('thead', null, el('tr', null, el('th', null, '#'), el('th', null, 'opened'), el('th', null, 'closed'), el('th', null, 'reason'), el('th', null, 'lines'), el('th', null, 'gap before'))));
    const body = el('tbody');
    ss.slice(0, 200).forEach((s, i) => {
      const prev = ss[i - 1];
      const gap = prev && endOf(prev) !== null && s.openTime !== null ? dur(s.openTime - endOf(prev)) : '';
      body.append(
        el(
          'tr',
          { 'data-reason': s.reason || 'open', class: s.reason && s.reason !== 'eof' && s.reason !== 'sealed' ? 'exit-bad' : null },
          el('td', null, el('a', { href: `#L${s.openSeq || s.closeSeq}`, class: 'seq' }, String(s.session))),
          el('td', null, iso(s.openTime)),
          el('td', null, s.reason === 'lost' ? `last entry ${iso(s.lastSeen)}` : iso(s.closeTime)),
          el('td', null, s.reason || 'not closed'),
          el('td', { class: 'num' }, num(s.lines)),
          el('td', null, gap),
        ),
      );
    });
    t.append(body);
    sec.append(t);
    if (ss.length > 200 || data.sessionsOmitted) sec.append(el('p', { class: 'quiet' }, `${num(ss.length - Math.min(ss.length, 200) + data.sessionsOmitted)} more sessions not shown.`));
    pics.append(sec);
  }
  {
    const sec = el('section', { id: 'rate' }, el('h2', null, 'Lines per second'));
    const r = data.rate;
    if (!r) sec.append(el('p', { class: 'quiet' }, 'No lines.'));
    else {
      const W = 640;
      const H = 200;
      const n = r.lines.length;
      const perSec = (c) => c / (r.bucketMs / 1000);
      const max = Math.max(1, ...r.lines.map(perSec));
      const bw = (W - 60) / n;
      const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'lines per second' });
      const y = (c) => H - 20 - (perSec(c) / max) * (H - 40);
      for (let i = 0; i < n; i++) {
        const xa = 50 + i * bw;
        const w = Math.max(0.6, bw - (bw > 3 ? 1 : 0));
        if (r.lines[i]) {
          const rect = svg('rect', { x: xa.toFixed(2), y: y(r.lines[i]).toFixed(1), width: w.toFixed(2), height: (H - 20 - y(r.lines[i])).toFixed(1), fill: '#54aeff', class: 'bar' });
          rect.append(svg('title', {}, `${iso(r.start + i * r.bucketMs)}: ${num(Math.round(perSec(r.lines[i])))} lines/s, ${num(r.stderr[i])} on stderr`));
          chart.append(rect);
        }
        if (r.stderr[i]) chart.append(svg('rect', { x: xa.toFixed(2), y: y(r.stderr[i]).toFixed(1), width: w.toFixed(2), height: Math.max(1, H - 20 - y(r.stderr[i])).toFixed(1), fill: '#cf222e', class: 'bar-stderr' }));
      }
      chart.append(
        svg('text', { x: 46, y: 16, 'text-anchor': 'end' }, num(Math.round(max))),
        svg('text', { x: 46, y: H - 20, 'text-anchor': 'end' }, '0'),
        svg('text', { x: 50, y: H - 6 }, iso(r.start)),
        svg('text', { x: W - 10, y: H - 6, 'text-anchor': 'end' }, `+${dur(n * r.bucketMs)} (${r.bucketMs / 1000} s per bar)`),
      );
      sec.append(chart, el('div', { class: 'legend' }, el('span', { class: 'sw lines' }), 'all lines', el('span', { class: 'sw stderr' }), 'stderr'));
    }
    pics.append(sec);
  }

  // -------------------------------------------------------------------------
  // The log view: only the visible rows exist in the DOM.
  const logSec = el('section', { id: 'log' }, el('h2', null, 'The log'));
  const logCount = el('span', { id: 'log-count' }, 'loading the log…');
  const status = el('span', { id: 'log-status' });
  const statusLine = el('div', { class: 'quiet' }, logCount, ' ', status);
  const search = el('input', { type: 'search', id: 'search', placeholder: 'search the log (Enter: next, Shift+Enter: previous)', 'aria-label': 'search the log' });
  const caseBox = el('input', { type: 'checkbox', id: 'search-case' });
  const reBox = el('input', { type: 'checkbox', id: 'search-regex' });
  const timeBox = el('input', { type: 'checkbox', id: 'show-time' });
  const prevBtn = el('button', { type: 'button', id: 'search-prev' }, '↑');
  const nextBtn = el('button', { type: 'button', id: 'search-next' }, '↓');
  const count = el('span', { id: 'search-count', class: 'quiet' });
  const toolbar = el(
    'div',
    { class: 'toolbar' },
    search,
    prevBtn,
    nextBtn,
    el('label', null, caseBox, ' match case'),
    el('label', null, reBox, ' regular expression'),
    el('label', null, timeBox, ' receive times'),
    count,
  );
  const ROW = 18;
  const viewport = el('div', { class: 'viewport log', id: 'viewport', tabindex: '0' });
  const spacer = el('div', { class: 'spacer' });
  const rows = el('div', { class: 'rows', id: 'rows' });
  viewport.append(spacer, rows);
  const leftOut = el('div', { id: 'left-out' });
  logSec.append(
    el('p', { class: 'quiet' }, 'Line numbers are seq numbers of the chain. Marks: | a line, E stderr, * a log-VM session event, ! a log-VM notice, C a claim of the build VM, # the seal; > continues in the next entry, % no newline at the end. Controls, bidi overrides and invalid bytes are shown as escapes (\\e, \\u202e, \\xff), as in logvm show.'),
    leftOut,
    toolbar,
    statusLine,
    viewport,
    el('p', { class: 'printnote' }, `The log itself (${num(index.entries)} entries) is not printed; open the report in a browser to read and search it.`),
  );
  app.append(logSec);
  if (index.mode === 'window') {
    const w = index.window;
    leftOut.append(
      el(
        'div',
        { class: 'lefout', id: 'window-note', 'data-left-out': index.entries - index.embedded },
        `This report holds ${num(index.embedded)} of the log's ${num(index.entries)} entries: the first ${num(w.head)}, ${num(w.around)} entries before and after every highlighted line, and the last ${num(w.tail)}${w.budgetExhausted ? `, until ${bytes(w.maxBytes)} of text (budget reached: later highlights have no window)` : ''}. ${num(index.entries - index.embedded)} entries are left out; read them with logvm show BUNDLE --since SEQ.`,
      ),
    );
  }

  let scale = 1;
  let target = -1;
  let hits = [];
  let hitPos = -1;
  let query = null;
  function layout() {
    const total = lines.length * ROW;
    scale = total > 3e7 ? 3e7 / total : 1;
    spacer.style.height = `${Math.max(1, total * scale)}px`;
  }
  function marksFor(i) {
    if (!query) return null;
    const p = plain[i].slice(2);
    const out = [];
    query.lastIndex = 0;
    let m;
    let guard = 0;
    while ((m = query.exec(p)) !== null && guard++ < 100) {
      if (m[0].length === 0) {
        query.lastIndex++;
        continue;
      }
      out.push([m.index, m.index + m[0].length]);
    }
    return out;
  }
  function render() {
    const top = viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / (ROW * scale)) - 5);
    const count = Math.ceil(viewport.clientHeight / ROW) + 10;
    rows.style.top = `${scale === 1 ? first * ROW : Math.max(0, top - 5 * ROW)}px`;
    rows.textContent = '';
    const showTime = timeBox.checked;
    for (let i = first; i < Math.min(lines.length, first + count); i++) {
      const line = lines[i];
      const mark = line.charAt(0);
      const cls = `row${mark === 'E' ? ' stderr' : mark === '|' ? '' : ' event'}${i === target ? ' target' : ''}`;
      const seq = seqOf(i);
      const row = el('div', { class: cls, 'data-seq': seq, id: `L${seq}` });
      const t = timeOf(i);
      row.append(el('a', { class: 'seq', href: `#L${seq}`, title: iso(t) }, String(seq)));
      if (showTime) row.append(el('span', { class: 'time' }, iso(t)));
      row.append(el('span', { class: 'mk' }, line.slice(0, 2)));
      renderText(row, line.slice(2), marksFor(i));
      rows.append(row);
    }
  }
  let pending = false;
  viewport.addEventListener('scroll', () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  });
  function scrollToIndex(i) {
    target = i;
    viewport.scrollTop = Math.max(0, i * ROW * scale - viewport.clientHeight / 3);
    render();
  }
  function goToSeq(seq) {
    const i = indexOfSeq(seq);
    if (i >= 0) {
      status.textContent = `seq ${seq}`;
      scrollToIndex(i);
    } else {
      const near = Math.min(lines.length - 1, -i - 1);
      status.textContent = `seq ${seq} is not in this report (left out of the window); showing the next entry it holds`;
      if (near >= 0) scrollToIndex(near);
    }
    viewport.scrollIntoView({ block: 'start' });
  }
  function fromHash() {
    const m = /^#L(\d{1,16})$/.exec(location.hash);
    if (m && lines.length) goToSeq(Number(m[1]));
  }
  window.addEventListener('hashchange', fromHash);

  function runSearch() {
    const q = search.value;
    hits = [];
    hitPos = -1;
    query = null;
    if (q === '') {
      count.textContent = '';
      render();
      return;
    }
    try {
      const src = reBox.checked ? q : q.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      query = new RegExp(src, caseBox.checked ? 'g' : 'gi');
    } catch (e) {
      count.textContent = `bad regular expression: ${e.message}`;
      render();
      return;
    }
    if (plain === null) plain = lines.map(plainOf);
    const test = new RegExp(query.source, query.flags.replace('g', ''));
    let n = 0;
    for (let i = 0; i < plain.length; i++) {
      // The first two characters are the marks, not the line.
      const p = plain[i];
      if (test.test(p.length > 2 ? p.slice(2) : '')) {
        n++;
        if (hits.length < 1e6) hits.push(i);
      }
    }
    count.textContent = `${num(n)} matching line(s)`;
    count.setAttribute('data-count', String(n));
    if (hits.length) {
      hitPos = 0;
      scrollToIndex(hits[0]);
    } else render();
  }
  function step(d) {
    if (!hits.length) return;
    hitPos = (hitPos + d + hits.length) % hits.length;
    count.textContent = `${num(hitPos + 1)} of ${num(hits.length)} matching line(s)`;
    scrollToIndex(hits[hitPos]);
  }
  let timer = 0;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(runSearch, 300);
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      if (query === null || search.value === '') runSearch();
      else step(e.shiftKey ? -1 : 1);
    }
  });
  caseBox.addEventListener('change', runSearch);
  reBox.addEventListener('change', runSearch);
  timeBox.addEventListener('change', render);
  prevBtn.addEventListener('click', () => step(-1));
  nextBtn.addEventListener('click', () => step(1));

  function loadLog() {
    performance.mark('appendlog-load-start');
    const node = $('log-text');
    const text = node ? node.textContent : '';
    if (node) node.remove(); // the lines will hold the text; drop the DOM copy
    lines = text === '' ? [] : text.split('\n');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    logCount.textContent = `${num(lines.length)} entries${index.mode === 'window' ? ` of ${num(index.entries)}` : ''}`;
    layout();
    render();
    fromHash();
    document.documentElement.setAttribute('data-ready', 'true');
    performance.mark('appendlog-ready');
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', loadLog);
  else loadLog();
})();
