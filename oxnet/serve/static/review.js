// OXnet review page: upload or pick an image, draw the detections above per-class thresholds,
// overlay the DAA attention map (eager models with the DAA head), download the JSON or the DICOM SR.
"use strict";

// One colour per class, from the service (/v1/model "colors": the project's palette, oxnet/utils/palette.py).
// The view: a canvas as large as the page allows (at most MAX_VIEW px a side), the image fitted into it,
// then zoomed (1x to MAX_ZOOM x) and panned; a canvas pixel (css) is view.t + view.fit * view.zoom * image pixel.
const MAX_VIEW = 1000, MIN_VIEW = 320, MAX_ZOOM = 16, ZOOM_STEP = 1.25;
const state = { model: null, result: null, upload: null, uploadName: "", image: null, thresholds: {},
                attention: null, custom: false, shown: [], highlighted: null };
const view = { fit: 1, zoom: 1, tx: 0, ty: 0, width: 512, height: 512, dpr: 1, drag: null };
const $ = (id) => document.getElementById(id);

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function color(name) {
  return (state.model && state.model.colors && state.model.colors[name]) || "#E69F00";
}

// The operating threshold of a class: the service's thresholds.json, else the model's test threshold.
function operatingThreshold(name) {
  const m = state.model;
  if (m.thresholds && m.thresholds[name] != null) return m.thresholds[name];
  return m.score_thresh != null ? m.score_thresh : 0.05;
}

async function loadModel() {
  const resp = await api("v1/model");
  if (!resp.ok) { setStatus("cannot load the model's description: " + await errorText(resp), true); return; }
  const m = state.model = await resp.json();
  $("model-info").textContent = `${m.classes.length} classes · ${m.format || "?"} model · OXnet ` +
    `${m.version || "?"}` + (m.thresholds ? " · operating thresholds from thresholds.json"
                                           : " · uncalibrated (no thresholds.json)");
  const body = $("thresholds").tBodies[0];
  body.innerHTML = "";
  for (const name of m.classes) {
    const value = operatingThreshold(name);
    state.thresholds[name] = value;
    const row = body.insertRow();
    row.dataset.class = name;
    row.innerHTML = `<td><span class="swatch"></span><span class="name"></span></td>` +
      `<td><input type="range" min="0" max="1" step="any"></td><td class="value"></td>` +
      `<td class="count note"></td>`;
    row.querySelector(".swatch").style.background = color(name);
    row.querySelector(".name").textContent = name;
    const slider = row.querySelector("input");
    slider.value = value;
    slider.dataset.class = name;
    slider.setAttribute("aria-label", `threshold for ${name}`);
    row.querySelector(".value").textContent = Number(value).toFixed(3);
    slider.addEventListener("input", () => {
      state.thresholds[name] = Number(slider.value);
      row.querySelector(".value").textContent = Number(slider.value).toFixed(3);
      update();
    });
  }
  const att = m.attention || { available: false, reason: "unknown" };
  $("attention").disabled = !att.available;
  $("attention-reason").textContent = att.available ? "" : "(unavailable: " + att.reason + ")";
  $("attention").title = att.available ? "overlay the DAA map X·R of the chosen class" : att.reason;
  const cls = $("attention-class");
  cls.innerHTML = "";
  for (const name of m.classes) cls.add(new Option(name, name));
  if ((m.examples || []).length) {
    $("example-box").hidden = false;
    for (const name of m.examples) $("example").add(new Option(name, name));
  }
  // ?example=NAME opens that example at once (a link to a case; a plain headless screenshot shows it)
  const wanted = new URLSearchParams(location.search).get("example");
  if (wanted) {
    if ((m.examples || []).includes(wanted)) {
      $("example").value = wanted;
      $("example").dispatchEvent(new Event("change"));
    } else {
      setStatus(`no example named ${wanted}`, true);
    }
  }
}

async function analyze(blob, name) {
  state.upload = blob;
  state.uploadName = name;
  state.attention = null;
  setStatus(`analysing ${name}…`);
  const form = new FormData();
  form.append("file", blob, name);
  const resp = await api("v1/predict?preview=1", { method: "POST", body: form });
  if (!resp.ok) {
    state.result = null;
    update();
    setStatus(`${name}: ` + await errorText(resp), true);
    return;
  }
  const result = await resp.json();
  const image = new Image();
  await new Promise((ok, fail) => { image.onload = ok; image.onerror = fail; image.src = result.preview; });
  state.result = result;
  state.image = image;
  state.highlighted = null;
  const isDicom = result.image.kind === "dicom";
  $("download-json").disabled = false;
  $("download-sr").disabled = !isDicom;
  $("download-sr").title = isDicom ? "a DICOM SR of the findings at the service's operating thresholds"
                                   : "DICOM uploads only (the SR references the source image)";
  renderImageScores();
  if ($("attention").checked) await fetchAttention();
  layout(true);
  update();
  setStatus(`${name}: ${result.image.width}×${result.image.height} ${result.image.kind.toUpperCase()}, ` +
            `${result.detections.length} detections; ${result.summary}` +
            (result.calibrated ? "" : " (uncalibrated: the model has no operating points)"));
}

async function fetchAttention() {
  if (!state.upload || state.attention) return;
  const form = new FormData();
  form.append("file", state.upload, state.uploadName);
  const resp = await api("v1/predict?attention=1", { method: "POST", body: form });
  if (!resp.ok) { setStatus("attention map: " + await errorText(resp), true); return; }
  state.attention = (await resp.json()).attention;
}

function renderImageScores() {
  const body = $("image-scores").tBodies[0];
  body.innerHTML = "";
  const scores = state.result && state.result.image_scores;
  if (!scores) { body.innerHTML = `<tr><td class="note">(no global head)</td></tr>`; return; }
  for (const [name, p] of Object.entries(scores).sort((a, b) => b[1] - a[1])) {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = p.toFixed(3);
  }
}

// The boxes shown: the service's findings at the operating points, unless a slider was moved away from
// its class's operating threshold; then every detection reaching its class's slider (no caps).
function computeShown() {
  const m = state.model;
  state.custom = !!m && m.classes.some((c) => Math.abs(state.thresholds[c] - operatingThreshold(c)) > 1e-9);
  if (!state.result) return [];
  const boxes = state.custom
    ? state.result.detections.filter((d) => d.score >= state.thresholds[d.class] - 1e-9)
    : state.result.findings;
  return boxes.slice().sort((a, b) => b.score - a.score);
}

// Recompute what is shown (new result, slider moved) and redraw the list and the canvas.
function update() {
  state.shown = computeShown();
  if (state.highlighted != null && state.highlighted >= state.shown.length) state.highlighted = null;
  const shown = state.shown, result = state.result;
  $("box-count").textContent = shown.length;
  $("box-kind").textContent = state.custom ? "boxes at the thresholds below"
    : result && !result.calibrated ? "boxes (uncalibrated: no operating points)" : "findings at the operating points";
  $("custom-note").hidden = !state.custom;
  const summary = $("summary");
  // the service's sentence when nothing passes the operating points (the heading says it otherwise)
  summary.hidden = !result || !!result.findings.length;
  summary.textContent = result ? result.summary : "";
  summary.className = summary.hidden ? "" : "none";
  for (const row of $("thresholds").tBodies[0].rows) {
    const n = shown.filter((d) => d.class === row.dataset.class).length;
    row.querySelector(".count").textContent = result ? `${n} shown` : "";
  }
  const list = $("box-list");
  list.innerHTML = "";
  shown.forEach((d, i) => {
    const item = document.createElement("li");
    item.dataset.index = i;
    item.tabIndex = 0;
    item.title = `box [x, y, w, h] = [${d.box.map((v) => v.toFixed(0)).join(", ")}] in the image's pixels`;
    item.innerHTML = `<span class="index"></span><span><span class="swatch"></span><span class="class"></span>` +
      `</span><span class="score"></span>`;
    item.querySelector(".index").textContent = i + 1;
    item.querySelector(".swatch").style.background = color(d.class);
    item.querySelector(".class").textContent = d.class;
    item.querySelector(".score").textContent = d.score.toFixed(3);
    item.addEventListener("mouseenter", () => highlight(i));
    item.addEventListener("mouseleave", () => highlight(null));
    item.addEventListener("focus", () => highlight(i));
    item.addEventListener("blur", () => highlight(null));
    list.appendChild(item);
  });
  markRows();
  paint();
}

function highlight(i) {
  if (i === state.highlighted) return;
  state.highlighted = i;
  markRows();
  paint();
}

function markRows() {
  for (const item of $("box-list").children) {
    const on = Number(item.dataset.index) === state.highlighted;
    item.classList.toggle("hl", on);
    item.setAttribute("aria-selected", on ? "true" : "false");
  }
  const d = state.highlighted != null ? state.shown[state.highlighted] : null;
  $("hover-info").textContent = d ? `${state.highlighted + 1} · ${d.class} ${d.score.toFixed(3)} at ` +
    `[${d.box.map((v) => v.toFixed(0)).join(", ")}]` + (d.operating_threshold != null
      ? ` (threshold ${d.operating_threshold.toFixed(3)})` : "") + " ·" : "";
}

// -- view: size, zoom and pan --------------------------------------------------------------------------
function scale() { return view.fit * view.zoom; }

// Size the canvas to the room the page has (width of its column, height of the window below it).
function layout(reset) {
  const canvas = $("view"), holder = $("viewer");
  const room = Math.max(MIN_VIEW, Math.min(MAX_VIEW, holder.clientWidth || MAX_VIEW));
  const top = holder.getBoundingClientRect().top + window.scrollY;
  const tall = Math.max(MIN_VIEW, Math.min(MAX_VIEW, window.innerHeight - top - 40));
  const W = state.result ? state.result.image.width : 1, H = state.result ? state.result.image.height : 1;
  const oldFit = view.fit;
  view.fit = Math.min(room / W, tall / H);
  view.width = Math.max(1, Math.round(W * view.fit));
  view.height = Math.max(1, Math.round(H * view.fit));
  if (reset) { view.zoom = 1; view.tx = 0; view.ty = 0; }
  else { view.tx *= view.fit / oldFit; view.ty *= view.fit / oldFit; clampPan(); }
  view.dpr = window.devicePixelRatio || 1;
  canvas.style.width = view.width + "px";
  canvas.style.height = view.height + "px";
  canvas.width = Math.round(view.width * view.dpr);
  canvas.height = Math.round(view.height * view.dpr);
}

function clampPan() {
  const W = state.result ? state.result.image.width : 1, H = state.result ? state.result.image.height : 1;
  view.tx = Math.min(0, Math.max(view.width - W * scale(), view.tx));
  view.ty = Math.min(0, Math.max(view.height - H * scale(), view.ty));
}

// Zoom to `zoom`, keeping the image point under canvas point (cx, cy) (css pixels) where it is.
function zoomTo(zoom, cx, cy) {
  if (!state.result) return;
  zoom = Math.min(MAX_ZOOM, Math.max(1, zoom));
  if (cx == null) { cx = view.width / 2; cy = view.height / 2; }
  const ix = (cx - view.tx) / scale(), iy = (cy - view.ty) / scale();
  view.zoom = zoom;
  view.tx = cx - ix * scale();
  view.ty = cy - iy * scale();
  clampPan();
  paint();
}

function canvasPoint(event) {
  const r = $("view").getBoundingClientRect();
  return [event.clientX - r.left, event.clientY - r.top];
}

// The shown box under canvas point (cx, cy): the smallest one containing it (a few pixels of slack).
function hitTest(cx, cy) {
  const ix = (cx - view.tx) / scale(), iy = (cy - view.ty) / scale(), slack = 3 / scale();
  let best = null, bestArea = Infinity;
  state.shown.forEach((d, i) => {
    const [x, y, w, h] = d.box;
    if (ix >= x - slack && ix <= x + w + slack && iy >= y - slack && iy <= y + h + slack && w * h < bestArea) {
      best = i;
      bestArea = w * h;
    }
  });
  return best;
}

// -- painting ------------------------------------------------------------------------------------------
function attentionPeak() {
  const k = state.attention.classes.indexOf($("attention-class").value);
  return k < 0 ? 0 : Math.max(...state.attention.maps[k].flat().map(Math.abs));
}

function drawAttention(ctx, w, h) {
  const att = state.attention;
  const k = att.classes.indexOf($("attention-class").value);
  if (k < 0) return;
  const map = att.maps[k], gh = map.length, gw = map[0].length;
  const peak = Math.max(1e-12, ...map.flat().map(Math.abs));
  const small = document.createElement("canvas");
  small.width = gw; small.height = gh;
  const sctx = small.getContext("2d");
  const pixels = sctx.createImageData(gw, gh);
  for (let y = 0; y < gh; y++) for (let x = 0; x < gw; x++) {
    const v = map[y][x] / peak, i = 4 * (y * gw + x);
    const rgb = v >= 0 ? [213, 94, 0] : [0, 114, 178];  // positive vermillion, negative blue
    pixels.data.set([...rgb, Math.round(150 * Math.pow(Math.abs(v), 0.75))], i);
  }
  sctx.putImageData(pixels, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, w, h);
}

// A text on a dark background at (x, y) (its top left), kept inside the canvas.
function tag(ctx, text, x, y, fill, size, bold) {
  ctx.font = `${bold ? "bold " : ""}${size}px system-ui, sans-serif`;
  const tw = ctx.measureText(text).width + 6, th = size + 4;
  const lx = Math.max(0, Math.min(x, view.width - tw)), ly = Math.max(0, Math.min(y, view.height - th));
  ctx.fillStyle = "rgba(0,0,0,0.75)";
  ctx.fillRect(lx, ly, tw, th);
  ctx.fillStyle = fill;
  ctx.fillText(text, lx + 3, ly + 2);
}

// Image, attention map, box outlines in their class's colour with their number; a label (class and
// score) only for the highlighted box, or for every box with "labels on image".
function paint() {
  const canvas = $("view"), ctx = canvas.getContext("2d");
  const { dpr } = view;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const zoomed = state.result && view.zoom > 1 + 1e-9;
  canvas.classList.toggle("zoomed", !!zoomed);
  for (const id of ["zoom-in", "zoom-out", "zoom-reset"]) $(id).disabled = !state.result;
  $("zoom-level").textContent = `${Math.round(view.zoom * 100)}%`;
  if (!state.result) { $("caption").textContent = ""; return; }
  const W = state.result.image.width, H = state.result.image.height, s = scale();
  ctx.setTransform(dpr * s, 0, 0, dpr * s, dpr * view.tx, dpr * view.ty);
  ctx.imageSmoothingEnabled = s * dpr < 3;  // enlarged a lot: the image's own pixels
  ctx.drawImage(state.image, 0, 0, W, H);
  if ($("attention").checked && state.attention) drawAttention(ctx, W, H);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.textBaseline = "top";
  const order = state.shown.map((d, i) => i).filter((i) => i !== state.highlighted);
  if (state.highlighted != null) order.push(state.highlighted);  // the highlighted box on top
  const rect = (d) => [view.tx + d.box[0] * s, view.ty + d.box[1] * s, d.box[2] * s, d.box[3] * s];
  for (const i of order) {
    const d = state.shown[i], [x, y, w, h] = rect(d), on = i === state.highlighted;
    if (on) { ctx.strokeStyle = "rgba(0,0,0,0.8)"; ctx.lineWidth = 5; ctx.strokeRect(x, y, w, h); }
    ctx.globalAlpha = state.highlighted == null || on ? 1 : 0.55;
    ctx.strokeStyle = color(d.class);
    ctx.lineWidth = on ? 3 : 2;
    ctx.strokeRect(x, y, w, h);
    tag(ctx, String(i + 1), x + 1, y + 1, color(d.class), 11, true);
    ctx.globalAlpha = 1;
  }
  const labelled = $("labels-on").checked ? order : state.highlighted != null ? [state.highlighted] : [];
  for (const i of labelled) {
    const d = state.shown[i], [x, y, , h] = rect(d);
    tag(ctx, `${i + 1} ${d.class} ${d.score.toFixed(2)}`, x, y >= 19 ? y - 19 : y + h + 2, color(d.class), 13);
  }
  $("caption").textContent = `${state.uploadName} · ${W}×${H} px · boxes in the image's own pixels` +
    ($("attention").checked && state.attention ? ` · DAA map of ${$("attention-class").value} ` +
     `(vermillion positive, blue negative; opacity grows with |value|, at most ${attentionPeak().toPrecision(3)})`
     : "");
}

// For scripts and tests: the highlighted finding (index into the list), the view and the boxes shown.
window.oxnetReview = {
  get highlighted() { return state.highlighted; },
  get view() { return { fit: view.fit, zoom: view.zoom, scale: scale(), tx: view.tx, ty: view.ty,
                        width: view.width, height: view.height }; },
  get shown() { return state.shown.map((d) => Object.assign({}, d)); },
  get custom() { return state.custom; },
};

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function stem() { return state.uploadName.replace(/\.[^.]*$/, "") || "image"; }

// -- events --------------------------------------------------------------------------------------------
const canvas = $("view");
canvas.addEventListener("wheel", (e) => {
  if (!state.result) return;
  e.preventDefault();
  const lines = e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? 400 : 1;  // line or page deltas to pixels
  const steps = Math.max(-4, Math.min(4, -e.deltaY * lines / 100));
  const [cx, cy] = canvasPoint(e);
  zoomTo(view.zoom * Math.pow(ZOOM_STEP, steps), cx, cy);
}, { passive: false });
canvas.addEventListener("pointerdown", (e) => {
  if (!state.result || e.button !== 0 || view.zoom <= 1 + 1e-9) return;
  view.drag = { x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty };
  canvas.setPointerCapture(e.pointerId);
  canvas.classList.add("dragging");
});
canvas.addEventListener("pointermove", (e) => {
  if (!state.result) return;
  if (view.drag) {
    view.tx = view.drag.tx + e.clientX - view.drag.x;
    view.ty = view.drag.ty + e.clientY - view.drag.y;
    clampPan();
    paint();
    return;
  }
  highlight(hitTest(...canvasPoint(e)));
});
function endDrag(e) {
  if (!view.drag) return;
  view.drag = null;
  canvas.classList.remove("dragging");
  if (canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
}
canvas.addEventListener("pointerup", endDrag);
canvas.addEventListener("pointercancel", endDrag);
canvas.addEventListener("pointerleave", () => { if (!view.drag) highlight(null); });
$("zoom-in").addEventListener("click", () => zoomTo(view.zoom * ZOOM_STEP));
$("zoom-out").addEventListener("click", () => zoomTo(view.zoom / ZOOM_STEP));
$("zoom-reset").addEventListener("click", () => zoomTo(1));
document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (!state.result || e.ctrlKey || e.metaKey || e.altKey) return;
  if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
  if (e.key === "+" || e.key === "=") zoomTo(view.zoom * ZOOM_STEP);
  else if (e.key === "-" || e.key === "_") zoomTo(view.zoom / ZOOM_STEP);
  else if (e.key === "0") zoomTo(1);
  else return;
  e.preventDefault();
});
window.addEventListener("resize", () => { if (state.result) { layout(false); paint(); } });
$("labels-on").addEventListener("change", paint);
$("reset-thresholds").addEventListener("click", () => {
  for (const input of $("thresholds").querySelectorAll("input[data-class]")) {
    const name = input.dataset.class;
    state.thresholds[name] = operatingThreshold(name);
    input.value = state.thresholds[name];
    input.closest("tr").querySelector(".value").textContent = Number(input.value).toFixed(3);
  }
  update();
});

$("file").addEventListener("change", (e) => {
  const f = e.target.files[0];
  if (f) analyze(f, f.name);
});
$("example").addEventListener("change", async (e) => {
  const name = e.target.value;
  if (!name) return;
  const resp = await api("v1/examples/" + encodeURIComponent(name));
  if (!resp.ok) { setStatus(`example ${name}: ` + await errorText(resp), true); return; }
  analyze(await resp.blob(), name);
});
$("attention").addEventListener("change", async () => {
  $("attention-class").disabled = !$("attention").checked;
  if ($("attention").checked) await fetchAttention();
  paint();
});
$("attention-class").addEventListener("change", paint);
$("download-json").addEventListener("click", () => {
  const out = Object.assign({}, state.result, { review_thresholds: state.thresholds });
  delete out.preview;
  download(new Blob([JSON.stringify(out, null, 1)], { type: "application/json" }), `oxnet_${stem()}.json`);
});
$("download-sr").addEventListener("click", async () => {
  const form = new FormData();
  form.append("file", state.upload, state.uploadName);
  const resp = await api("v1/predict?format=dicom-sr", { method: "POST", body: form });
  if (!resp.ok) { setStatus("DICOM SR: " + await errorText(resp), true); return; }
  download(await resp.blob(), `oxnet_sr_${stem()}.dcm`);
});

layout(true);
paint();
loadModel().catch((e) => setStatus("cannot load the model's description: " + e, true));
