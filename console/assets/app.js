// The operator console. It reads the certificates from the operator API
// (/v1/…) with the session cookie, polling every two seconds, and sends
// actions with the session's CSRF token. Every text from the server is
// inserted as text (textContent, Text nodes), never as HTML.
'use strict';

(() => {
  const POLL_MS = 2000;
  const BIG_POLL_MS = 3000;
  const PAGE_SIZE = 100;
  const DELEGATION_REFRESH_MS = 30000;
  const MAX_DELEGATION_FETCHES = 3;
  // Live progress streams held open at once: browsers allow six
  // connections per origin, and polling needs one.
  const MAX_WATCHERS = 2;
  const STATUSES = ['pending delegation', 'processing', 'active', 'failed', 'revoked'];

  const state = {
    csrf: '',
    certs: [],
    loaded: false,
    page: 0,
    filter: '',
    status: '',
    delegations: new Map(), // name -> {dels, at}
    delegationFetches: new Set(),
    progress: new Map(), // name -> [line]
    messages: new Map(), // name -> {text, error}
    busy: new Set(),
    watching: new Map(), // name -> AbortController
    rows: new Map(), // name -> {key, tr}
    pollTimer: 0,
    etag: '',
    issued: '',
  };

  const $ = (id) => document.getElementById(id);

  // el builds an element; strings among children become Text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined && c !== false) e.append(c);
    }
    return e;
  }

  class AuthError extends Error {}

  function toLogin() {
    window.location.assign('/console/login');
  }

  async function api(method, path, body, signal, headers) {
    const opts = { method, headers: Object.assign({}, headers), credentials: 'same-origin', cache: 'no-store', signal };
    if (method !== 'GET') opts.headers['X-CSRF-Token'] = state.csrf;
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    if (resp.status === 401) {
      toLogin();
      throw new AuthError('the session has ended');
    }
    if (!resp.ok && resp.status !== 304) {
      let msg = resp.status + ' ' + resp.statusText;
      try {
        const j = await resp.json();
        if (j && j.error) msg = j.error;
      } catch (_) { /* not JSON: keep the status */ }
      throw new Error(msg);
    }
    return resp;
  }

  // lines reads an NDJSON (or plain JSON) reply, calling onLine per object.
  async function lines(resp, onLine) {
    const type = resp.headers.get('Content-Type') || '';
    if (!type.includes('ndjson')) {
      onLine({ certificate: await resp.json() });
      return;
    }
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) onLine(JSON.parse(line));
      }
    }
    if (buf.trim()) onLine(JSON.parse(buf));
  }

  const certPath = (name, tail) => '/v1/certificates/' + encodeURIComponent(name) + (tail ? '/' + tail : '');

  function fmtTime(s) {
    if (!s) return '';
    const d = new Date(s);
    if (isNaN(d)) return s;
    return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  }

  // explain says what a delegation check found, in the CLI's words.
  function explain(d) {
    if (d.ok) return 'in place';
    const rec = d.name + ' CNAME ' + d.target;
    let auth = '';
    if (d.problem && d.problem !== 'resolution failed' && (d.detail || '').startsWith('authoritative: ')) auth = ' (' + d.detail + ')';
    switch (d.problem) {
      case 'missing': return 'no record; create ' + rec + auth;
      case 'wrong target': return 'CNAME points to ' + d.found + ', expected ' + d.target + auth;
      case 'not a CNAME': return 'found ' + d.found + ' where a CNAME belongs (does the DNS host flatten CNAMEs?); create ' + rec + auth;
      case undefined: case '': return 'not checked yet';
      default: return d.problem + ': ' + (d.detail || '');
    }
  }

  function progressLine(ev) {
    if (ev.step === 'done') {
      return 'done: ' + (ev.status || '') + (ev.error ? ' (' + ev.error + ')' : '');
    }
    const text = !ev.ok && ev.error ? ev.error : (ev.detail || '');
    return ev.step + ' ' + (ev.ok ? '✓' : '✗') + ' ' + text;
  }

  function upsert(cert) {
    if (!cert || !cert.name) return;
    const plain = Object.assign({}, cert);
    delete plain.delegations;
    const i = state.certs.findIndex((c) => c.name === cert.name);
    if (i >= 0) state.certs[i] = plain;
    else state.certs.push(plain);
    if (cert.delegations && cert.delegations.length) {
      state.delegations.set(cert.name, { dels: cert.delegations, at: Date.now() });
    }
  }

  function addProgress(name, ev) {
    const list = state.progress.get(name) || [];
    list.push(progressLine(ev));
    state.progress.set(name, list.slice(-8));
  }

  // --- filtering and paging -------------------------------------------

  function matches(c, f) {
    if (c.name.toLowerCase().includes(f)) return true;
    if ((c.domains || []).some((d) => d.toLowerCase().includes(f))) return true;
    return (c.last_error || '').toLowerCase().includes(f);
  }

  function visible() {
    const f = state.filter.trim().toLowerCase();
    const st = state.status;
    if (!f && !st) return state.certs;
    return state.certs.filter((c) => (!st || c.status === st) && (!f || matches(c, f)));
  }

  // --- rows ------------------------------------------------------------

  function copyButton(text) {
    return el('button', { type: 'button', class: 'secondary', 'data-copy': text, 'aria-label': 'Copy ' + text }, 'Copy');
  }

  function recordList(name, dels) {
    const ul = el('ul', { class: 'records', 'aria-label': 'Records to create for ' + name });
    for (const d of dels) {
      const rec = d.name + ' CNAME ' + d.target;
      ul.append(el('li', {},
        el('code', { class: 'record' }, rec), ' ', copyButton(rec), ' ',
        el('span', { class: d.ok ? 'check check-ok' : 'check check-bad' }, (d.ok ? '✓ ' : '✗ ') + explain(d))));
    }
    return ul;
  }

  function buildRow(c) {
    const busy = state.busy.has(c.name);
    const tr = el('tr', { 'data-cert': c.name, 'data-status': c.status });
    tr.append(el('th', { scope: 'row', class: 'name' }, c.name));
    tr.append(el('td', { class: 'domains' }, (c.domains || []).join(', ')));

    const statusCell = el('td', {}, el('span', { class: 'status status-' + c.status.replace(/ /g, '-') }, c.status));
    const prog = state.progress.get(c.name);
    if (prog && prog.length) {
      const ul = el('ul', { class: 'progress', 'aria-label': 'Progress' });
      for (const l of prog) ul.append(el('li', {}, l));
      statusCell.append(ul);
    }
    tr.append(statusCell);

    const expiry = el('td', { class: 'expiry' });
    if (c.not_after) {
      const left = c.days_left < 0 ? 'expired ' + -c.days_left + ' days ago' : c.days_left + ' days left';
      expiry.append(fmtTime(c.not_after), el('br'), el('span', { class: 'days-left' }, left));
    } else {
      expiry.append('—');
    }
    tr.append(expiry);

    const next = el('td', { class: 'next' });
    if (c.next_attempt) next.append('attempt ' + fmtTime(c.next_attempt), el('br'), 'after ' + c.attempts + ' failed');
    else if (c.renew_at) next.append('renewal ' + fmtTime(c.renew_at));
    else if (c.status === 'failed') next.append(c.attempts + ' failed attempts; press Retry');
    else next.append('—');
    tr.append(next);

    const details = el('td', { class: 'details' });
    if (c.serial) details.append(el('div', { class: 'serial' }, 'serial ', el('code', {}, c.serial)));
    const d = c.status === 'pending delegation' ? state.delegations.get(c.name) : undefined;
    // A pending row's last error lists the same records as the check
    // below it: show it only until the check is there.
    if (c.last_error && !d) details.append(el('p', { class: 'error last-error' }, c.last_error));
    if (c.status === 'pending delegation') {
      if (d) {
        details.append(recordList(c.name, d.dels), el('div', { class: 'hint' }, 'checked ' + new Date(d.at).toLocaleTimeString()));
      } else {
        details.append(el('p', { class: 'hint' }, 'Checking the records…'));
      }
    }
    const msg = state.messages.get(c.name);
    if (msg) details.append(el('p', { class: msg.error ? 'error message' : 'message', role: msg.error ? 'alert' : 'status' }, msg.text));
    tr.append(details);

    const actions = el('td', { class: 'actions' });
    const revokable = c.serial && c.status !== 'revoked';
    for (const [action, label, enabled] of [
      ['renew', 'Renew', true], ['retry', 'Retry', true], ['revoke', 'Revoke', revokable], ['delete', 'Delete', true],
    ]) {
      actions.append(el('button', {
        type: 'button', 'data-action': action, 'aria-label': label + ' ' + c.name,
        class: action === 'revoke' || action === 'delete' ? 'danger' : '', disabled: busy || !enabled,
      }, label));
    }
    tr.append(actions);
    return tr;
  }

  function rowKey(c) {
    const d = c.status === 'pending delegation' ? state.delegations.get(c.name) : undefined;
    return JSON.stringify([c, d, state.progress.get(c.name), state.messages.get(c.name), state.busy.has(c.name)]);
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function render() {
    const list = visible();
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const slice = list.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);

    // Keep the focused control across a rebuilt row.
    const active = document.activeElement;
    let restore = null;
    const activeRow = active && active.closest ? active.closest('tr[data-cert]') : null;
    if (activeRow) restore = { name: activeRow.dataset.cert, action: active.dataset.action, copy: active.dataset.copy };

    const tbody = $('rows');
    const want = [];
    const keep = new Map();
    for (const c of slice) {
      const key = rowKey(c);
      let entry = state.rows.get(c.name);
      if (!entry || entry.key !== key) entry = { key, tr: buildRow(c) };
      keep.set(c.name, entry);
      want.push(entry.tr);
    }
    if (!slice.length && state.loaded) {
      const text = state.certs.length ? 'No certificate matches the filter.' : 'No certificates yet: issue one above.';
      want.push(el('tr', { class: 'empty' }, el('td', { colspan: 7 }, text)));
    }
    state.rows = keep;
    for (let i = 0; i < want.length; i++) {
      if (tbody.children[i] !== want[i]) tbody.insertBefore(want[i], tbody.children[i] || null);
    }
    while (tbody.children.length > want.length) tbody.lastElementChild.remove();

    if (restore && !document.activeElement.closest('tr[data-cert]')) {
      const entry = state.rows.get(restore.name);
      if (entry) {
        const sel = restore.action ? '[data-action="' + restore.action + '"]' : null;
        const target = sel ? entry.tr.querySelector(sel) : null;
        if (target && !target.disabled) target.focus();
      }
    }

    const counts = new Map(STATUSES.map((s) => [s, 0]));
    for (const c of state.certs) counts.set(c.status, (counts.get(c.status) || 0) + 1);
    for (const opt of $('status-filter').options) {
      if (opt.value) setText(opt, opt.value + ' (' + (counts.get(opt.value) || 0) + ')');
      else setText(opt, 'all (' + state.certs.length + ')');
    }
    const shown = list.length === state.certs.length ? list.length + ' certificates' : list.length + ' of ' + state.certs.length + ' certificates';
    setText($('summary'), shown);
    setText($('page'), 'Page ' + (state.page + 1) + ' of ' + pages);
    $('prev').disabled = state.page === 0;
    $('next').disabled = state.page >= pages - 1;

    const issued = document.getElementById('issued-status');
    const cert = issued && state.certs.find((c) => c.name === state.issued);
    if (cert && issued.textContent !== cert.status) {
      // Records stay on show only while they are still awaited.
      const d = cert.status === 'pending delegation' ? state.delegations.get(cert.name) : undefined;
      showIssued(Object.assign({}, cert, { delegations: d ? d.dels : [] }));
    }

    fetchDelegations(slice);
    watchProcessing(slice);
  }

  // --- delegation checks and live progress -----------------------------

  function fetchDelegations(slice) {
    const now = Date.now();
    for (const c of slice) {
      if (state.delegationFetches.size >= MAX_DELEGATION_FETCHES) return;
      if (c.status !== 'pending delegation' || state.delegationFetches.has(c.name)) continue;
      const d = state.delegations.get(c.name);
      if (d && now - d.at < DELEGATION_REFRESH_MS) continue;
      state.delegationFetches.add(c.name);
      api('GET', '/v1/delegation?cert-name=' + encodeURIComponent(c.name))
        .then((r) => r.json())
        .then((certs) => {
          for (const cert of certs || []) {
            state.delegations.set(cert.name, { dels: cert.delegations || [], at: Date.now() });
            upsert(cert);
          }
        })
        .catch((e) => {
          if (!(e instanceof AuthError)) state.messages.set(c.name, { error: true, text: 'delegation check failed: ' + e.message });
        })
        .finally(() => {
          state.delegationFetches.delete(c.name);
          render();
        });
    }
  }

  function watchProcessing(slice) {
    const want = slice.filter((c) => c.status === 'processing' && !state.busy.has(c.name)).slice(0, MAX_WATCHERS).map((c) => c.name);
    for (const [name, ctl] of state.watching) {
      if (!want.includes(name)) {
        ctl.abort();
        state.watching.delete(name);
      }
    }
    for (const name of want) {
      if (state.watching.has(name)) continue;
      const ctl = new AbortController();
      state.watching.set(name, ctl);
      api('GET', certPath(name, 'events'), undefined, ctl.signal)
        .then((resp) => lines(resp, (line) => {
          if (line.event) {
            addProgress(name, line.event);
            render();
          }
        }))
        .catch(() => { /* aborted, or the stream ended: polling goes on */ })
        .finally(() => {
          if (state.watching.get(name) === ctl) state.watching.delete(name);
        });
    }
  }

  // --- polling ---------------------------------------------------------

  async function poll() {
    clearTimeout(state.pollTimer);
    try {
      // The list's ETag spares parsing thousands of unchanged rows.
      const resp = await api('GET', '/v1/certificates', undefined, undefined, state.etag ? { 'If-None-Match': state.etag } : {});
      if (resp.status !== 304) {
        const certs = await resp.json();
        if (!state.loaded) performance.mark('console-parsed');
        state.certs = Array.isArray(certs) ? certs : [];
        state.etag = resp.headers.get('ETag') || '';
      }
      const first = !state.loaded;
      state.loaded = true;
      render();
      setText($('live'), 'Live · updated ' + new Date().toLocaleTimeString());
      if (first) {
        performance.mark('console-ready');
        document.body.dataset.ready = 'true';
      }
    } catch (e) {
      if (e instanceof AuthError) return;
      setText($('live'), 'Cannot reach the daemon (' + e.message + '); retrying');
    }
    // A long list costs the daemon a store scan per poll: poll it a
    // little less often, still well within five seconds.
    state.pollTimer = setTimeout(poll, state.certs.length > 2000 ? BIG_POLL_MS : POLL_MS);
  }

  // --- actions ---------------------------------------------------------

  function confirmDialog(action, cert) {
    return new Promise((resolve) => {
      const dlg = $('confirm');
      const revoke = action === 'revoke';
      $('confirm-title').textContent = (revoke ? 'Revoke ' : 'Delete ') + cert.name + '?';
      let text;
      if (revoke) {
        text = 'The CA marks serial ' + cert.serial + ' revoked; clients that check revocation stop trusting it. This cannot be undone.';
      } else {
        text = 'Its files and private key are removed and it is no longer renewed (' + (cert.domains || []).join(', ') + ').';
        if (cert.status === 'active') text += ' It is still valid; afterwards delegated can no longer revoke it.';
      }
      $('confirm-text').textContent = text;
      $('reason-field').hidden = !revoke;
      $('reason').value = 'unspecified';
      dlg.returnValue = '';
      dlg.addEventListener('close', () => {
        resolve(dlg.returnValue === 'confirm' ? { reason: $('reason').value } : null);
      }, { once: true });
      dlg.showModal();
    });
  }

  async function act(name, action, opener) {
    const cert = state.certs.find((c) => c.name === name);
    if (!cert) return;
    let answer = null;
    if (action === 'revoke' || action === 'delete') {
      answer = await confirmDialog(action, cert);
      if (opener && opener.isConnected) opener.focus();
      if (!answer) return;
    }
    state.busy.add(name);
    state.messages.delete(name);
    state.progress.delete(name);
    const watcher = state.watching.get(name);
    if (watcher) {
      watcher.abort();
      state.watching.delete(name);
    }
    render();
    const onLine = (line) => {
      if (line.certificate) upsert(line.certificate);
      if (line.event) addProgress(name, line.event);
      render();
    };
    try {
      switch (action) {
        case 'renew':
          await lines(await api('POST', certPath(name, 'renew'), { force: true, wait: true }), onLine);
          break;
        case 'retry':
          await lines(await api('POST', certPath(name, 'retry'), { wait: true }), onLine);
          break;
        case 'revoke': {
          const c = await (await api('POST', certPath(name, 'revoke'), { reason: answer.reason })).json();
          upsert(c);
          state.messages.set(name, { text: 'revoked (' + answer.reason + ')' });
          break;
        }
        case 'delete':
          await api('DELETE', certPath(name));
          state.certs = state.certs.filter((c) => c.name !== name);
          state.progress.delete(name);
          state.delegations.delete(name);
          setText($('live'), 'Deleted ' + name);
          break;
      }
    } catch (e) {
      if (!(e instanceof AuthError)) state.messages.set(name, { error: true, text: action + ' failed: ' + e.message });
    } finally {
      state.busy.delete(name);
      render();
      poll();
    }
  }

  async function copy(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // No clipboard permission (plain HTTP, or refused): copy through a
      // selected field instead.
      const ta = el('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      document.execCommand('copy');
      ta.remove();
    }
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  }

  // showIssued shows the certificate the form created; render keeps its
  // status current.
  function showIssued(cert) {
    state.issued = cert.name;
    const out = $('issue-result');
    out.replaceChildren();
    out.append(el('p', {}, el('strong', {}, cert.name), ': ', el('span', { class: 'status status-' + cert.status.replace(/ /g, '-'), id: 'issued-status' }, cert.status)));
    if (cert.last_error) out.append(el('p', { class: 'error' }, cert.last_error));
    const dels = cert.delegations || [];
    if (dels.length) {
      out.append(el('p', {}, 'Records to create in the customer\'s DNS zone:'), recordList(cert.name, dels));
    }
  }

  async function issue(form) {
    const name = form.querySelector('[name=name]').value.trim();
    const domains = form.querySelector('[name=domains]').value.split(/[\s,]+/).filter(Boolean);
    const out = $('issue-result');
    out.replaceChildren(el('p', {}, 'Requesting ' + name + '…'));
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const resp = await api('POST', '/v1/certificates', { name, domains, wait: true });
      await lines(resp, (line) => {
        if (line.certificate) {
          upsert(line.certificate);
          showIssued(line.certificate);
        }
        if (line.event) addProgress(line.certificate ? line.certificate.name : name, line.event);
        render();
      });
    } catch (e) {
      if (!(e instanceof AuthError)) out.replaceChildren(el('p', { class: 'error', role: 'alert' }, 'Not issued: ' + e.message));
    } finally {
      button.disabled = false;
      poll();
    }
  }

  // --- wiring ----------------------------------------------------------

  function wire() {
    $('rows').addEventListener('click', (e) => {
      const b = e.target.closest('button');
      if (!b) return;
      if (b.dataset.copy) {
        copy(b.dataset.copy, b);
        return;
      }
      const tr = b.closest('tr[data-cert]');
      if (tr && b.dataset.action) act(tr.dataset.cert, b.dataset.action, b);
    });
    $('issue-result').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-copy]');
      if (b) copy(b.dataset.copy, b);
    });
    document.forms.issue.addEventListener('submit', (e) => {
      e.preventDefault();
      issue(e.target);
    });
    $('filter').addEventListener('input', (e) => {
      state.filter = e.target.value;
      state.page = 0;
      render();
    });
    $('status-filter').addEventListener('change', (e) => {
      state.status = e.target.value;
      state.page = 0;
      render();
    });
    $('prev').addEventListener('click', () => { state.page--; render(); });
    $('next').addEventListener('click', () => { state.page++; render(); });
    $('logout').addEventListener('click', async () => {
      try {
        await api('POST', '/console/logout');
      } catch (_) { /* the session is gone either way */ }
      toLogin();
    });
  }

  async function start() {
    wire();
    // The list loads while the CSRF token comes: reading needs none.
    poll();
    try {
      const resp = await api('GET', '/console/session');
      state.csrf = (await resp.json()).csrf;
    } catch (e) {
      if (!(e instanceof AuthError)) setText($('live'), 'Cannot reach the daemon (' + e.message + ')');
    }
  }

  start();
})();
