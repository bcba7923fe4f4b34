// The traffic view. Every value comes from requests that anyone on the
// internet can shape (paths above all), so it is only ever put into the page
// as text (textContent, setAttribute), never as HTML.
'use strict';

(function () {
  const MAX_ROWS = 500;
  const rows = document.getElementById('rows');
  const empty = document.getElementById('empty');
  const state = document.getElementById('state');
  const count = document.getElementById('count');
  const filter = document.getElementById('filter');
  const kind = document.getElementById('kind');
  const pause = document.getElementById('pause');
  const KINDS = new Set(['ingress', 'call']);
  let paused = false;
  let held = [];

  function pad(n, w) { return String(n).padStart(w, '0'); }

  function formatTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    return pad(d.getHours(), 2) + ':' + pad(d.getMinutes(), 2) + ':' +
      pad(d.getSeconds(), 2) + '.' + pad(d.getMilliseconds(), 3);
  }

  function formatDuration(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '';
    if (ms >= 1000) return (ms / 1000).toFixed(2) + ' s';
    if (ms >= 10) return Math.round(ms) + ' ms';
    return ms.toFixed(1) + ' ms';
  }

  function statusClass(s) {
    if (s >= 500) return 's5';
    if (s >= 400) return 's4';
    if (s >= 300) return 's3';
    if (s >= 200) return 's2';
    return 's0';
  }

  function cell(tr, text, cls, title) {
    const td = document.createElement('td');
    td.textContent = text == null ? '' : String(text);
    if (cls) td.className = cls;
    if (title) td.setAttribute('title', String(title));
    tr.appendChild(td);
    return td;
  }

  function row(e) {
    const tr = document.createElement('tr');
    tr.dataset.id = String(e.id);
    const k = KINDS.has(e.kind) ? e.kind : 'other';
    tr.dataset.kind = k;
    cell(tr, formatTime(e.time), 'time', e.time);
    cell(tr, k === 'call' ? 'call' : k, 'kind k-' + k);
    cell(tr, e.source, 'source');
    cell(tr, e.operation || '', 'op');
    cell(tr, e.method, 'method');
    cell(tr, e.path, 'path', e.path);
    cell(tr, e.status, 'num status ' + statusClass(Number(e.status)));
    cell(tr, formatDuration(e.duration_ms), 'num dur');
    cell(tr, e.upstream || '', 'upstream', e.upstream);
    cell(tr, e.did || '', 'did', e.did);
    return tr;
  }

  function visible(tr) {
    if (kind.value && tr.dataset.kind !== kind.value) return false;
    const q = filter.value.trim().toLowerCase();
    return !q || tr.textContent.toLowerCase().includes(q);
  }

  function refresh() {
    let shown = 0;
    for (const tr of rows.children) {
      const v = visible(tr);
      tr.hidden = !v;
      if (v) shown++;
    }
    empty.hidden = rows.children.length > 0;
    count.textContent = shown + ' of ' + rows.children.length + ' shown' +
      (held.length ? ', ' + held.length + ' held' : '');
  }

  function add(e, fresh) {
    if (rows.querySelector('tr[data-id="' + Number(e.id) + '"]')) return;
    const tr = row(e);
    tr.hidden = !visible(tr);
    rows.insertBefore(tr, rows.firstChild);
    while (rows.children.length > MAX_ROWS) rows.removeChild(rows.lastChild);
    if (fresh) {
      tr.classList.add('new');
      setTimeout(function () { tr.classList.remove('new'); }, 1500);
    }
  }

  filter.addEventListener('input', refresh);
  kind.addEventListener('change', refresh);
  pause.addEventListener('click', function () {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) {
      held.forEach(function (e) { add(e, true); });
      held = [];
    }
    refresh();
  });

  // The backlog comes as JSON first, so that only what happens from now on
  // is highlighted; the stream then resumes after the newest entry.
  function listen(after) {
    const source = new EventSource('traffic/events?after=' + encodeURIComponent(after));
    source.addEventListener('open', function () {
      state.textContent = 'live';
      state.className = 'state live';
    });
    source.addEventListener('error', function () {
      state.textContent = 'reconnecting…';
      state.className = 'state down';
    });
    source.addEventListener('reset', function () {
      // ioproxy restarted: its ids start again from 1.
      rows.replaceChildren();
      held = [];
      refresh();
    });
    source.addEventListener('message', function (ev) {
      let e;
      try { e = JSON.parse(ev.data); } catch (err) { return; }
      if (!e || typeof e !== 'object') return;
      if (paused) held.push(e); else add(e, true);
      refresh();
    });
  }

  fetch('traffic.json', { cache: 'no-store' })
    .then(function (resp) {
      if (!resp.ok) throw new Error('traffic.json: HTTP ' + resp.status);
      return resp.json();
    })
    .then(function (page) {
      (page.entries || []).forEach(function (e) { add(e, false); });
      refresh();
      listen(page.last || 0);
    })
    .catch(function () { listen(0); });
  refresh();
})();
