// The dashboard page's script: signs in with a token (which opens a session cookie), then
// lists the backups and restores, refreshing while one runs, and draws the charts. It talks
// only to this agent, relative to the page's own address.
"use strict";

// Runs of slashes made one (as the agent does): a page opened at `//service-instances/…`
// must not build `//host/…` links, which a browser reads as another host.
const base = location.pathname.replace(/\/+/g, "/").replace(/\/+$/, "");
const instance = decodeURIComponent(base.split("/").pop() || "");
const api = { csrf: null, expiresAt: null };
let timer = null;
let lastBackups = [];

const $ = (id) => document.getElementById(id);

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  return s < 1 ? Number(s).toFixed(2) + " s" : s < 60 ? Number(s).toFixed(1) + " s" : Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// Shows the sign-in form with what is missing or expired.
function signedOut(message) {
  api.csrf = null;
  if (timer) { clearTimeout(timer); timer = null; }
  $("app").hidden = true;
  $("signin").hidden = false;
  $("session").textContent = "";
  $("auth-message").textContent = message;
}

// A call to the API: JSON in and out; a 401 signs out with the agent's reason.
async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && api.csrf) headers["X-CSRF-Token"] = api.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) {
    signedOut((data && data.description) || "The token is missing or no longer valid: sign in again.");
    throw new Error("signed out");
  }
  if (!r.ok) {
    const why = data ? (data.description || data.msg || data.error) : r.statusText;
    throw new Error(why || ("HTTP " + r.status));
  }
  return data;
}

// Asks the agent for the session: with `authorization`, opens one.
async function session(authorization) {
  const headers = { Accept: "application/json" };
  if (authorization) headers.Authorization = authorization;
  const r = await fetch(base + "/", { headers, credentials: "same-origin" });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const why = data ? (data.description || data.msg || data.error) : r.statusText;
    return { error: why || ("HTTP " + r.status) };
  }
  return data;
}

async function start(authorization) {
  const s = await session(authorization);
  if (s.error) {
    signedOut(authorization ? "The token was refused: " + s.error : (/Authorization header/i.test(s.error) && !/session/i.test(s.error) ? "No token yet: paste one to sign in (" + s.error + ")." : s.error));
    return;
  }
  api.csrf = s.csrf_token;
  api.expiresAt = s.expires_at;
  $("instance-id").textContent = s.instance_id;
  $("session").textContent = "Signed in until " + when(s.expires_at);
  $("signin").hidden = true;
  $("app").hidden = false;
  await loadPassword();
  await refresh();
}

function stateCell(status) {
  return '<td class="state-' + esc(status) + '">' + esc(status) + "</td>";
}

// A running restore's progress bar and bytes (the API's `progress`), else the reason.
function restoreDetail(r, t) {
  const p = r.progress;
  if (!p) return esc(t.reason || "");
  return '<progress class="restore-progress" max="100" value="' + esc(p.percent) + '">' + esc(p.percent) + " %</progress> " +
    '<span class="restore-progress-text">' + esc(p.percent) + " % (" + esc(bytes(p.bytes_done)) + " of " + esc(bytes(p.bytes_total)) + ")</span>";
}

function render(list) {
  const backups = list.backups || [];
  lastBackups = backups;
  $("backups").querySelector("tbody").innerHTML = backups.map((b) => {
    const t = b.backup_agent_task || {};
    const done = t.status === "done";
    const actions = done
      ? '<button type="button" class="restore" data-id="' + esc(b.id) + '">Restore</button>' +
        '<a class="button download" data-id="' + esc(b.id) + '" href="' + esc(base + "/backups/" + b.id + "/download") + '" download>Download</a>'
      : (t.reason ? esc(t.reason) : "");
    return '<tr data-id="' + esc(b.id) + '"><td>' + esc(b.id) + "</td>" + stateCell(t.status) +
      "<td>" + esc(when(t.created_at)) + "</td><td>" + esc(when(t.updated_at)) + "</td><td>" +
      esc(seconds(t.duration_in_seconds)) + "</td><td>" + esc(bytes(t.size_in_bytes)) + "</td><td>" +
      esc(bytes(t.stored_bytes)) + "</td><td>" + actions + "</td></tr>";
  }).join("") || '<tr><td colspan="8">No backups yet.</td></tr>';
  const restores = list.restores || [];
  $("restores").querySelector("tbody").innerHTML = restores.map((r) => {
    const t = (r.backup_agent_tasks || [])[0] || {};
    return '<tr data-id="' + esc(r.id) + '"><td>' + esc(r.id) + "</td><td>" + esc(r.backup_id === null || r.backup_id === undefined ? "" : r.backup_id) + "</td>" +
      stateCell(t.status) + "<td>" + esc(when(t.created_at)) + "</td><td>" + esc(when(t.updated_at)) + "</td><td>" + restoreDetail(r, t) + "</td></tr>";
  }).join("") || '<tr><td colspan="6">No restores yet.</td></tr>';
  drawBackupChart(backups);
  const busy = backups.some((b) => ["queued", "running"].includes((b.backup_agent_task || {}).status)) ||
    restores.some((r) => ["queued", "running"].includes(((r.backup_agent_tasks || [])[0] || {}).status));
  return busy;
}

async function refresh() {
  if (timer) { clearTimeout(timer); timer = null; }
  let busy = false;
  try {
    busy = render(await call("GET", base + "/backups"));
    $("refresh-note").textContent = (busy ? "A task is running: refreshing every 2 s" : "Refreshed") + " at " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e.message === "signed out") return;
    setStatus("The list could not be read: " + e.message, true);
  }
  try {
    drawDiskChart(await call("GET", "/v1/instances/" + encodeURIComponent(instance) + "/metrics?quantity=60"));
  } catch (e) {
    if (e.message === "signed out") return;
    $("disk-chart").textContent = "The metrics could not be read: " + e.message;
  }
  timer = setTimeout(refresh, busy ? 2000 : 15000);
}

async function createBackup() {
  $("create").disabled = true;
  try {
    const r = await call("POST", base + "/backups", {});
    setStatus("Backup " + r.id + ": " + r.message + ".");
  } catch (e) {
    if (e.message !== "signed out") setStatus("The backup could not be started: " + e.message, true);
  } finally {
    $("create").disabled = false;
  }
  await refresh();
}

function askRestore(id) {
  const b = lastBackups.find((x) => String(x.id) === String(id));
  const t = (b && b.backup_agent_task) || {};
  $("confirm-text").textContent = "Backup " + id + (t.backup_name ? " (" + t.backup_name + ")" : "") + ", taken " + when(t.created_at) +
    ", will replace the current data of service instance " + $("instance-id").textContent +
    ": every file in the agent's restore target folder is replaced by the backup's content. Changes made since that backup are lost.";
  const dialog = $("confirm");
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "restore") { setStatus("Restore cancelled."); return; }
    try {
      const r = await call("POST", base + "/backups/restore", { instance_id: $("instance-id").textContent, backup_id: Number(id) });
      setStatus("Restore " + r.restore_id + " of backup " + id + " started.");
    } catch (e) {
      if (e.message !== "signed out") setStatus("The restore could not be started: " + e.message, true);
    }
    await refresh();
  };
  dialog.showModal();
}

function showDecrypt(id) {
  const b = lastBackups.find((x) => String(x.id) === String(id));
  const name = (b && b.backup_agent_task && b.backup_agent_task.backup_name) || "BACKUP";
  $("download-help").hidden = false;
  $("decrypt-command").textContent = "service-backup decrypt --key-file backup.key --extract restored/ " + name + ".tar.*";
  $("decrypt-password-help").hidden = !passwordSet;
  $("decrypt-password-command").hidden = !passwordSet;
  $("decrypt-password-command").textContent = "service-backup decrypt --passphrase --extract restored/ " + name + ".tar.*";
}

// The backup password: set (new backups only), removed, and its state shown.
let passwordSet = false;

function showPassword(state) {
  passwordSet = !!(state && state.set);
  $("password-state").textContent = passwordSet
    ? "A backup password is set (since " + when(state.set_at) + "); it applies to " + state.applies_to + "."
    : "No backup password is set: downloads open with the operator's key only.";
}

async function loadPassword() {
  try {
    showPassword(await call("GET", base + "/backups/password"));
  } catch (e) {
    if (e.message !== "signed out") $("password-state").textContent = "The password state could not be read: " + e.message;
  }
}

async function setPassword(ev) {
  ev.preventDefault();
  const password = $("backup-password").value;
  $("backup-password").value = "";
  $("password-set").disabled = true;
  try {
    const r = await call("PUT", base + "/backups/password", { password });
    showPassword(r);
    setStatus("Backup password set: " + r.message + ".");
  } catch (e) {
    if (e.message !== "signed out") setStatus("The password could not be set: " + e.message, true);
  } finally {
    $("password-set").disabled = false;
  }
}

async function removePassword() {
  try {
    const r = await call("DELETE", base + "/backups/password");
    showPassword(r);
    setStatus("Backup password removed: " + r.message + ".");
  } catch (e) {
    if (e.message !== "signed out") setStatus("The password could not be removed: " + e.message, true);
  }
}

// The charts: plain SVG drawn here.
function svgChart(width, height, inner) {
  return '<svg viewBox="0 0 ' + width + " " + height + '" role="img">' + inner + "</svg>";
}

const COLORS = ["#2357c5", "#1b7f3b", "#8a5a00", "#6b3fa0", "#0f7c8c"];

function drawDiskChart(lines) {
  // Each sample line is "<namespace>.<metric> <value> <unix time>"; the disk datapoints end
  // in `used_percent` and the threshold in `threshold` (the documented `parachute.disk.*`
  // names or the older `parachute.*` ones).
  const series = {};
  let threshold = null;
  for (const raw of lines || []) {
    const line = typeof raw === "string" ? raw : (raw && raw.name ? raw.name + " " + raw.value + " " + (raw.timestamp || 0) : "");
    const [name, value, ts] = line.split(" ");
    let m = /parachute\.(?:disk\.)?([^.]+)\.used_percent$/.exec(name || "");
    if (m) {
      (series[m[1]] = series[m[1]] || []).push([Number(ts), Number(value)]);
      continue;
    }
    m = /parachute\.(?:disk\.)?[^.]+\.(?:used_)?threshold$/.exec(name || "");
    if (m) threshold = Number(value);
  }
  const names = Object.keys(series);
  if (!names.length) { $("disk-chart").textContent = "No disk samples yet."; return; }
  const W = 640, H = 200, L = 40, B = 20;
  const all = names.flatMap((n) => series[n].map((p) => p[0]));
  const t0 = Math.min(...all), t1 = Math.max(...all);
  const x = (t) => L + (t1 === t0 ? (W - L) / 2 : ((t - t0) / (t1 - t0)) * (W - L - 10));
  const y = (p) => H - B - (Math.min(Math.max(p, 0), 100) / 100) * (H - B - 10);
  let inner = '<line x1="' + L + '" y1="' + y(0) + '" x2="' + W + '" y2="' + y(0) + '" stroke="#999"/>';
  for (const p of [0, 50, 100]) inner += '<text x="4" y="' + (y(p) + 4) + '">' + p + "%</text>";
  names.forEach((n, i) => {
    const pts = series[n].sort((a, b) => a[0] - b[0]).map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
    inner += '<polyline class="disk" data-disk="' + esc(n) + '" fill="none" stroke-width="2" stroke="' + COLORS[i % COLORS.length] + '" points="' + pts + '"/>';
    const last = series[n][series[n].length - 1];
    inner += '<circle cx="' + x(last[0]).toFixed(1) + '" cy="' + y(last[1]).toFixed(1) + '" r="3" fill="' + COLORS[i % COLORS.length] + '"/>';
  });
  if (threshold !== null) {
    inner += '<line class="threshold" x1="' + L + '" x2="' + W + '" y1="' + y(threshold) + '" y2="' + y(threshold) + '" stroke="#b3261e" stroke-dasharray="6 4"/>';
    inner += '<text x="' + (W - 110) + '" y="' + (y(threshold) - 4) + '">threshold ' + threshold + "%</text>";
  }
  const legend = names.map((n, i) => '<span class="c' + (i % COLORS.length) + '">■</span> ' + esc(n) + " " + series[n][series[n].length - 1][1] + "%").join(" · ");
  $("disk-chart").innerHTML = svgChart(W, H, inner) + '<p class="legend">' + legend + (threshold !== null ? " · threshold " + threshold + "%" : "") + "</p>";
}

function drawBackupChart(backups) {
  const done = backups.map((b) => b.backup_agent_task || {}).filter((t) => t.status === "done" && t.duration_in_seconds !== null && t.duration_in_seconds !== undefined)
    .sort((a, b) => new Date(a.created_at) - new Date(b.created_at)).slice(-30);
  if (!done.length) { $("backup-chart").textContent = "No finished backups yet."; return; }
  const W = 640, H = 200, L = 40, B = 20;
  const maxD = Math.max(...done.map((t) => t.duration_in_seconds), 0.001);
  const maxS = Math.max(...done.map((t) => t.size_in_bytes || 0), 1);
  const step = (W - L - 40) / done.length;
  let inner = '<line x1="' + L + '" y1="' + (H - B) + '" x2="' + (W - 40) + '" y2="' + (H - B) + '" stroke="#999"/>';
  inner += '<text x="2" y="12">' + esc(seconds(maxD)) + "</text>";
  inner += '<text x="' + (W - 2) + '" y="12" text-anchor="end">' + esc(bytes(maxS)) + "</text>";
  const sizePts = [];
  done.forEach((t, i) => {
    const h = (t.duration_in_seconds / maxD) * (H - B - 20);
    const x0 = L + i * step + step * 0.15;
    inner += '<rect class="duration" x="' + x0.toFixed(1) + '" y="' + (H - B - h).toFixed(1) + '" width="' + (step * 0.7).toFixed(1) + '" height="' + h.toFixed(1) + '" fill="#9db4e8"><title>' + esc(when(t.created_at) + ": " + seconds(t.duration_in_seconds) + ", " + bytes(t.size_in_bytes)) + "</title></rect>";
    sizePts.push((x0 + step * 0.35).toFixed(1) + "," + (H - B - ((t.size_in_bytes || 0) / maxS) * (H - B - 20)).toFixed(1));
  });
  inner += '<polyline class="size" fill="none" stroke="#1b7f3b" stroke-width="2" points="' + sizePts.join(" ") + '"/>';
  $("backup-chart").innerHTML = svgChart(W, H, inner) + '<p class="legend"><span class="cd">■</span> duration (left scale) · <span class="c1">■</span> size (right scale), oldest to newest</p>';
}

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  let token = $("token").value.trim();
  // `cf oauth-token` prints "bearer <jwt>"; a bare token gets the scheme word.
  if (!/^\S+\s+\S/.test(token)) token = "Bearer " + token;
  $("token").value = "";
  start(token);
});
$("create").addEventListener("click", createBackup);
$("password-form").addEventListener("submit", setPassword);
$("password-remove").addEventListener("click", removePassword);
$("backups").addEventListener("click", (ev) => {
  const restore = ev.target.closest("button.restore");
  if (restore) askRestore(restore.dataset.id);
  const download = ev.target.closest("a.download");
  if (download) showDecrypt(download.dataset.id);
});

$("instance-id").textContent = instance;
start(null);
