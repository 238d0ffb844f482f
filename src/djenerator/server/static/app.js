// djenerator web page: plain JS, no libraries, talks only to this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { runs: [], run: null, losses: null, health: null };
const COLORS = ["#f0a030", "#4fb3ff", "#44c78a", "#c78bff"];
const METRICS = {
  loss: ["d_loss", "g_loss"],
  acc: ["d_real_acc", "d_fake_acc"],
  grad: ["g_grad_norm", "d_grad_norm"],
  div: ["diversity"],
};

// The token (when the server has one) is asked for once, on the first 401, and kept for this tab's session.
const TOKEN_KEY = "djenerator-token";
let asking = null;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function askToken() {
  if (!asking) {
    asking = new Promise((resolve) => {
      const t = window.prompt("This djenerator server needs its token:") || "";
      if (t) { sessionStorage.setItem(TOKEN_KEY, t.trim()); $("token").value = t.trim(); }
      resolve(Boolean(t));
    }).finally(() => setTimeout(() => { asking = null; }, 0));
  }
  return asking;
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const t = token();
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

async function api(path, opts = {}, retried = false) {
  const res = await fetch(path, { ...opts, headers: { ...headers(false), ...(opts.headers || {}) } });
  if (res.status === 401 && !retried && await askToken()) {
    return api(path, { ...opts, headers: { ...(opts.headers || {}), Authorization: "Bearer " + token() } }, true);
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    let msg = body && body.detail ? body.detail : res.statusText;
    if (Array.isArray(msg)) msg = msg.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    const err = new Error(msg);
    err.status = res.status;
    err.retryAfter = res.headers.get("Retry-After");
    throw err;
  }
  return body;
}

function setStatus(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

// ---- canvases ---------------------------------------------------------------------------------------
function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w: canvas.clientWidth, h: canvas.clientHeight };
}

function drawWave(canvas, peaks, progress) {
  const { ctx, w, h } = fitCanvas(canvas);
  ctx.clearRect(0, 0, w, h);
  const mid = h / 2;
  ctx.strokeStyle = "#2a2f3a";
  ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(w, mid); ctx.stroke();
  const n = peaks.min.length;
  const played = progress * w;
  for (let x = 0; x < w; x++) {
    const a = Math.floor((x / w) * n), b = Math.max(a + 1, Math.floor(((x + 1) / w) * n));
    let lo = 0, hi = 0;
    for (let i = a; i < b && i < n; i++) { lo = Math.min(lo, peaks.min[i]); hi = Math.max(hi, peaks.max[i]); }
    ctx.fillStyle = x < played ? "#f0a030" : "#4fb3ff";
    const y0 = mid - hi * (mid - 2), y1 = mid - lo * (mid - 2);
    ctx.fillRect(x, y0, 1, Math.max(1, y1 - y0));
  }
  if (progress > 0) {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(Math.min(w - 1, played), 0, 1, h);
  }
}

// A small "magma"-like colour map: dark violet -> red -> orange -> pale yellow.
const STOPS = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];
const CMAP = (() => {
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (STOPS.length - 1), k = Math.min(STOPS.length - 2, Math.floor(t)), f = t - k;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = STOPS[k][c] + (STOPS[k + 1][c] - STOPS[k][c]) * f;
  }
  return out;
})();

function drawSpectrogram(canvas, spec) {
  const raw = atob(spec.data);
  const F = spec.frames, B = spec.bins;
  const img = new ImageData(F, B);
  for (let f = 0; f < F; f++) {
    for (let b = 0; b < B; b++) {
      const v = raw.charCodeAt(f * B + b);
      const p = ((B - 1 - b) * F + f) * 4; // low frequencies at the bottom
      img.data[p] = CMAP[v * 3]; img.data[p + 1] = CMAP[v * 3 + 1]; img.data[p + 2] = CMAP[v * 3 + 2]; img.data[p + 3] = 255;
    }
  }
  const off = document.createElement("canvas");
  off.width = F; off.height = B;
  off.getContext("2d").putImageData(img, 0, 0);
  const { ctx, w, h } = fitCanvas(canvas);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(off, 0, 0, w, h);
  ctx.fillStyle = "rgba(255,255,255,.65)";
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillText(`${Math.round(spec.max_hz)} Hz`, 4, 11);
  ctx.fillText("0", 4, h - 4);
}

function niceTicks(lo, hi, n = 4) {
  if (!(hi > lo)) { hi = lo + 1; }
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
  const err = (hi - lo) / n / step;
  const s = step * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const out = [];
  for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-12; v += s) out.push(+v.toPrecision(6));
  return out;
}

function drawChart() {
  const canvas = $("loss-chart");
  const { ctx, w, h } = fitCanvas(canvas);
  ctx.clearRect(0, 0, w, h);
  const legend = $("chart-legend");
  legend.innerHTML = "";
  const data = state.losses && state.losses.data;
  ctx.font = "11px system-ui, sans-serif";
  if (!data || !data.step || data.step.length === 0) {
    ctx.fillStyle = "#8b93a3";
    ctx.fillText("no loss log yet", 12, h / 2);
    return;
  }
  const keys = METRICS[$("chart-metric").value].filter((k) => data[k]);
  const steps = data.step;
  let lo = Infinity, hi = -Infinity;
  for (const k of keys) for (const v of data[k]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const L = 40, R = 8, T = 8, Bm = 20;
  const x0 = steps[0], x1 = steps[steps.length - 1] === x0 ? x0 + 1 : steps[steps.length - 1];
  const X = (s) => L + ((s - x0) / (x1 - x0)) * (w - L - R);
  const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (h - T - Bm);
  ctx.strokeStyle = "#2a2f3a"; ctx.fillStyle = "#8b93a3"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const v of niceTicks(lo, hi)) {
    const y = Math.round(Y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(w - R, y); ctx.stroke();
    ctx.fillText(String(v), L - 5, y);
  }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const s of niceTicks(x0, x1, 3)) if (s >= x0 && s <= x1) ctx.fillText(String(s), X(s), h - Bm + 5);
  keys.forEach((k, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 1.6; ctx.beginPath();
    let started = false;
    data[k].forEach((v, j) => {
      if (v === null) { started = false; return; }
      const x = X(steps[j]), y = Y(v);
      if (!started) { ctx.moveTo(x, y); started = true; } else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${COLORS[i % COLORS.length]}"></i>${k}`;
    legend.appendChild(item);
  });
}

// ---- runs -------------------------------------------------------------------------------------------
async function loadHealth() {
  try {
    state.health = await api("/api/health");
    const pill = $("health");
    const g = state.health.generation;
    pill.textContent = `online · ${g.in_flight}/${g.capacity} busy`;
    pill.className = "pill ok";
    $("token-wrap").hidden = !state.health.auth_required;
    const lim = state.health.limits;
    $("count").max = lim.count; $("interp-steps").max = lim.steps; $("seconds").max = lim.seconds;
  } catch (e) {
    $("health").textContent = "offline";
    $("health").className = "pill bad";
  }
}

async function loadRuns() {
  state.runs = await api("/api/runs");
  const sel = $("run");
  sel.innerHTML = "";
  for (const r of state.runs) {
    const o = document.createElement("option");
    o.value = r.id;
    o.textContent = `${r.id} — step ${r.step}`;
    sel.appendChild(o);
  }
  if (!state.runs.length) {
    const o = document.createElement("option");
    o.textContent = "no runs found"; o.disabled = true; sel.appendChild(o);
    $("generate").disabled = true;
    return;
  }
  const wanted = new URLSearchParams(location.search).get("run");
  if (wanted && state.runs.some((r) => r.id === wanted)) sel.value = wanted;
  await loadRun(sel.value);
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toPrecision(3);
  return String(v);
}

async function loadRun(id) {
  const [run, losses] = await Promise.all([api(`/api/runs/${encodeURIComponent(id)}`),
                                           api(`/api/runs/${encodeURIComponent(id)}/losses?max_points=800`)]);
  state.run = run; state.losses = losses;
  const ck = $("checkpoint");
  ck.innerHTML = "";
  const latest = document.createElement("option");
  latest.value = "latest"; latest.textContent = `latest (${run.latest_checkpoint || "none"})`;
  ck.appendChild(latest);
  for (const c of [...run.checkpoints].reverse()) {
    const o = document.createElement("option");
    o.value = c.id; o.textContent = `step ${c.step}`;
    ck.appendChild(o);
  }
  const cfg = run.config || {}, m = run.latest_metrics || {};
  const rows = [
    ["preset", cfg.preset], ["architecture", cfg.model && cfg.model.arch], ["loss", cfg.train && cfg.train.loss],
    ["sample rate", cfg.data && `${cfg.data.sample_rate} Hz`],
    ["clip length", run.clip_seconds ? `${run.clip_seconds.toFixed(3)} s` : null],
    ["step", run.step], ["D loss", m.d_loss], ["G loss", m.g_loss], ["steps/s", m.steps_per_s],
  ];
  $("run-info").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${escapeHtml(fmt(v))}</dd>`).join("");
  $("seconds").disabled = !run.long_form;
  $("repeat").disabled = !(run.long_form && cfg.model && cfg.model.arch === "twostage");
  $("seconds-wrap").title = run.long_form ? "Length of each piece" : "This model makes fixed-length clips";
  const ev = $("evaluation");
  if (run.evaluation) {
    ev.hidden = false;
    ev.textContent = `Evaluation: ${run.evaluation.n_flagged} of ${run.evaluation.clips.length} evaluated clips flagged as possible copies` +
      (run.evaluation.seed !== null ? ` (seed ${run.evaluation.seed}).` : ".");
  } else ev.hidden = true;
  const hl = $("health-log");
  hl.hidden = !run.health.length;
  hl.innerHTML = run.health.length ? "<b>Training warnings</b>" + run.health.slice(-5).map((l) => `<div>${escapeHtml(l)}</div>`).join("") : "";
  drawChart();
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// ---- generation -------------------------------------------------------------------------------------
function request() {
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const body = { run: $("run").value, checkpoint: $("checkpoint").value, count: num("count") || 1, seed: num("seed") || 0 };
  if (num("bpm") !== null) body.bpm = num("bpm");
  if ($("interp").checked) { body.interpolate_to = num("interp-to"); body.steps = num("interp-steps"); }
  else if (!$("seconds").disabled && num("seconds") !== null) {
    body.seconds = num("seconds");
    if (!$("repeat").disabled && num("repeat") !== null) body.repeat = num("repeat");
  }
  return body;
}

async function generate(ev) {
  ev.preventDefault();
  const btn = $("generate");
  btn.disabled = true;
  setStatus("generating…");
  const t0 = performance.now();
  try {
    const res = await api("/api/generate", { method: "POST", headers: headers(true), body: JSON.stringify(request()) });
    const ms = Math.round(performance.now() - t0);
    setStatus(`${res.clips.length} clip(s) from ${res.run} at step ${res.step}${res.cached ? " (from cache)" : ""} in ${ms} ms`);
    renderClips(res);
  } catch (e) {
    setStatus(e.status === 503 ? `server busy, try again in ${e.retryAfter || "a few"} s` : `error: ${e.message}`, true);
  } finally {
    btn.disabled = false;
    loadHealth();
  }
}

function renderClips(res) {
  const box = $("clips");
  box.innerHTML = "";
  $("empty").hidden = true;
  const tpl = $("clip-tpl");
  for (const c of res.clips) {
    const node = tpl.content.firstElementChild.cloneNode(true);
    node.querySelector(".clip-title").textContent = `Clip ${c.index + 1} · seed ${c.seed} · ${c.seconds.toFixed(2)} s`;
    const badge = node.querySelector(".badge");
    if (c.memorisation) {
      badge.hidden = false;
      badge.className = "badge " + (c.memorisation.flagged ? "flag" : "clean");
      badge.textContent = c.memorisation.flagged ? "possible copy" : "original";
      badge.title = c.memorisation.flagged
        ? `corr ${fmt(c.memorisation.corr)} with ${c.memorisation.source_file} at ${fmt(c.memorisation.source_time_s)} s`
        : `max corr ${fmt(c.memorisation.corr)} (from the evaluation report)`;
      node.dataset.flagged = String(c.memorisation.flagged);
    }
    const a = node.querySelector(".download");
    a.href = c.download_url; a.setAttribute("download", c.filename); a.title = c.filename;
    const audio = node.querySelector("audio");
    audio.src = c.url;
    box.appendChild(node);
    const wave = node.querySelector(".wave"), spec = node.querySelector(".spec");
    api(c.analysis_url).then((an) => {
      node._peaks = an.peaks; node._spec = an.spectrogram;
      drawWave(wave, an.peaks, 0);
      drawSpectrogram(spec, an.spectrogram);
      wave.dataset.drawn = "1";
    }).catch((e) => setStatus(`analysis failed: ${e.message}`, true));
    const redraw = () => node._peaks && drawWave(wave, node._peaks, audio.duration ? audio.currentTime / audio.duration : 0);
    audio.addEventListener("timeupdate", redraw);
    audio.addEventListener("seeked", redraw);
    audio.addEventListener("play", () => {
      document.querySelectorAll("audio").forEach((o) => { if (o !== audio) o.pause(); });
      const tick = () => { redraw(); if (!audio.paused) requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
    });
    wave.addEventListener("click", (e) => {
      if (!audio.duration) return;
      const r = wave.getBoundingClientRect();
      audio.currentTime = ((e.clientX - r.left) / r.width) * audio.duration;
    });
  }
}

// ---- wiring -----------------------------------------------------------------------------------------
function init() {
  localStorage.removeItem(TOKEN_KEY);  // older pages kept it for good; now it lives for the session only
  $("token").value = token();
  $("token").addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, $("token").value.trim()));
  $("run").addEventListener("change", () => loadRun($("run").value).catch((e) => setStatus(e.message, true)));
  $("chart-metric").addEventListener("change", drawChart);
  $("interp").addEventListener("change", () => {
    const on = $("interp").checked;
    $("interp-to").disabled = !on; $("interp-steps").disabled = !on; $("count").disabled = on;
  });
  $("random-seed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e6); });
  $("gen-form").addEventListener("submit", generate);
  window.addEventListener("resize", () => {
    drawChart();
    document.querySelectorAll(".clip").forEach((n) => {
      if (n._peaks) drawWave(n.querySelector(".wave"), n._peaks, 0);
      if (n._spec) drawSpectrogram(n.querySelector(".spec"), n._spec);
    });
  });
  loadHealth();
  loadRuns().catch((e) => setStatus(`cannot list runs: ${e.message}`, true));
  setInterval(loadHealth, 15000);
}

document.addEventListener("DOMContentLoaded", init);
