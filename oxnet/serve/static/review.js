// OXnet review page: upload or pick an image, draw the detections above per-class thresholds,
// overlay the DAA attention map (eager models with the DAA head), download the JSON or the DICOM SR.
"use strict";

// One colour per class, from the service (/v1/model "colors": the project's palette, oxnet/utils/palette.py).
const MAX_SIDE = 640, MIN_SIDE = 448;
const state = { model: null, result: null, upload: null, uploadName: "", image: null, thresholds: {},
                attention: null };
const $ = (id) => document.getElementById(id);

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function color(name) {
  return (state.model && state.model.colors && state.model.colors[name]) || "#E69F00";
}

async function errorText(resp) {
  try { const body = await resp.json(); return `${resp.status}: ${body.detail}`; }
  catch (e) { return `${resp.status} ${resp.statusText}`; }
}

// The service may need an API token: asked once, kept for this tab (sessionStorage), sent as
// "Authorization: Bearer"; a 401 asks again.
const TOKEN_KEY = "oxnet-api-token";

function askToken(reason) {
  return new Promise((resolve) => {
    const box = $("token-box");
    box.hidden = false;
    $("token-reason").textContent = reason;
    $("token").focus();
    box.onsubmit = (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      box.hidden = true;
      resolve(token);
    };
  });
}

async function api(url, options) {
  for (;;) {
    const opts = Object.assign({}, options || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    opts.headers = Object.assign({}, opts.headers || {}, token ? { Authorization: "Bearer " + token } : {});
    const resp = await fetch(url, opts);
    if (resp.status !== 401) return resp;
    sessionStorage.removeItem(TOKEN_KEY);
    setStatus("this service needs an API token", true);
    await askToken(await errorText(resp));
    setStatus("");
  }
}

async function loadModel() {
  const resp = await api("v1/model");
  if (!resp.ok) { setStatus("cannot load the model's description: " + await errorText(resp), true); return; }
  const m = state.model = await resp.json();
  $("model-info").textContent = `${m.classes.length} classes · ${m.format || "?"} model · OXnet ` +
    `${m.version || "?"}` + (m.thresholds ? " · operating thresholds from thresholds.json" : "");
  const start = m.score_thresh != null ? m.score_thresh : 0.05;
  const body = $("thresholds").tBodies[0];
  body.innerHTML = "";
  for (const name of m.classes) {
    const value = m.thresholds && m.thresholds[name] != null ? m.thresholds[name] : start;
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
      draw();
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
    draw();
    setStatus(`${name}: ` + await errorText(resp), true);
    return;
  }
  const result = await resp.json();
  const image = new Image();
  await new Promise((ok, fail) => { image.onload = ok; image.onerror = fail; image.src = result.preview; });
  state.result = result;
  state.image = image;
  const isDicom = result.image.kind === "dicom";
  $("download-json").disabled = false;
  $("download-sr").disabled = !isDicom;
  $("download-sr").title = isDicom ? "a DICOM SR of the findings at the service's operating thresholds"
                                   : "DICOM uploads only (the SR references the source image)";
  renderImageScores();
  if ($("attention").checked) await fetchAttention();
  draw();
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

function visible() {
  if (!state.result) return [];
  return state.result.detections.filter((d) => d.score >= state.thresholds[d.class] - 1e-9);
}

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

function draw() {
  const canvas = $("view"), ctx = canvas.getContext("2d");
  const shown = visible();
  $("box-count").textContent = shown.length;
  const list = $("box-list");
  list.innerHTML = "";
  for (const row of $("thresholds").tBodies[0].rows) {
    const n = shown.filter((d) => d.class === row.dataset.class).length;
    row.querySelector(".count").textContent = state.result ? `${n} shown` : "";
  }
  if (!state.result) { ctx.clearRect(0, 0, canvas.width, canvas.height); $("caption").textContent = ""; return; }
  const W = state.result.image.width, H = state.result.image.height;
  const scale = Math.min(MAX_SIDE / Math.max(W, H), Math.max(1, MIN_SIDE / Math.max(W, H)));
  canvas.width = Math.round(W * scale);
  canvas.height = Math.round(H * scale);
  ctx.imageSmoothingEnabled = scale < 1;
  ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  if ($("attention").checked && state.attention) drawAttention(ctx, canvas.width, canvas.height);
  ctx.font = "13px system-ui, sans-serif";
  ctx.textBaseline = "top";
  const labels = [];
  for (const d of shown) {  // boxes first, then every label on top of them
    const [x, y, w, h] = d.box.map((v) => v * scale);
    ctx.strokeStyle = color(d.class);
    ctx.lineWidth = 2;
    ctx.strokeRect(x, y, w, h);
    labels.push([d, x, y, h]);
    const item = document.createElement("li");
    item.textContent = `${d.class} ${d.score.toFixed(3)} at [${d.box.map((v) => v.toFixed(0)).join(", ")}]`;
    list.appendChild(item);
  }
  for (const [d, x, y, h] of labels) {
    const label = `${d.class} ${d.score.toFixed(2)}`;
    const tw = ctx.measureText(label).width + 6;
    const lx = Math.min(x, canvas.width - tw), ly = y >= 17 ? y - 17 : y + h;
    ctx.fillStyle = "rgba(0,0,0,0.7)";
    ctx.fillRect(lx, ly, tw, 17);
    ctx.fillStyle = color(d.class);
    ctx.fillText(label, lx + 3, ly + 2);
  }
  $("caption").textContent = `${state.uploadName} · ${W}×${H} px · boxes in the image's own pixels` +
    ($("attention").checked && state.attention ? ` · DAA map of ${$("attention-class").value} ` +
     `(vermillion positive, blue negative; opacity grows with |value|, at most ${attentionPeak().toPrecision(3)})`
     : "");
}

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
  draw();
});
$("attention-class").addEventListener("change", draw);
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

loadModel().catch((e) => setStatus("cannot load the model's description: " + e, true));
