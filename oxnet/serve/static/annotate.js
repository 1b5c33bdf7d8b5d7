// OXnet annotation view: the queue of pool images to box, the model's proposals (dashed), accept /
// reject / move / resize them, draw new boxes with a class, mark "no finding", undo, and save each image
// as fully supervised (POST /v1/annotate/images/{id}; a stale revision gets 409, shown as a conflict).
"use strict";

const HANDLE = 7;          // corner handle half-size (css pixels)
const MIN_DRAG = 3;        // css pixels a drag must cover to draw a box
const FALLBACK = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#CC6677"];
const state = {
  model: null, queue: null, categories: [], cls: 0,
  current: -1, image: null, doc: null, drafts: new Map(),
  view: { scale: 1, ox: 0, oy: 0, dpr: 1, width: 1, height: 1 },
  drag: null, loading: 0,
};
const $ = (id) => document.getElementById(id);

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").className = kind || "";
}

function color(name) {
  const fromModel = state.model && state.model.colors && state.model.colors[name];
  if (fromModel) return fromModel;
  const i = state.categories.findIndex((c) => c.name === name);
  return (i >= 0 && state.categories[i].color) || FALLBACK[Math.max(0, i) % FALLBACK.length];
}

// -- loading -------------------------------------------------------------------------------------------
async function start() {
  const resp = await api("v1/model");
  if (resp.ok) state.model = await resp.json();
  await loadQueue();
  if (state.queue && state.queue.images.length) {
    const wanted = new URLSearchParams(location.search).get("image");
    const i = wanted ? state.queue.images.findIndex((im) => String(im.id) === wanted) : 0;
    await open(Math.max(0, i));
  }
}

async function loadQueue() {
  const resp = await api("v1/annotate/queue");
  if (!resp.ok) { setStatus("cannot load the queue: " + await errorText(resp), "error"); return; }
  const q = state.queue = await resp.json();
  state.categories = q.categories;
  $("pool-info").textContent = `${q.pool} · ${q.images.length} images to box` +
    (q.advised ? " (advisor's order)" : " (pool order)") + ` · saved to ${q.annotations_file}`;
  $("user-info").textContent = q.can_save ? `saving as ${q.user}` : "saving is off: " + q.save_refusal;
  renderClasses();
  renderQueue();
}

function renderClasses() {
  const box = $("classes");
  box.innerHTML = "";
  state.categories.forEach((c, i) => {
    const label = document.createElement("label");
    label.innerHTML = `<input type="radio" name="cls"> <span class="swatch"></span><span class="name"></span>` +
      ` <kbd></kbd>`;
    const input = label.querySelector("input");
    input.value = c.name;
    input.checked = i === state.cls;
    input.addEventListener("change", () => pickClass(i));
    label.querySelector(".swatch").style.background = color(c.name);
    label.querySelector(".name").textContent = c.name;
    label.querySelector("kbd").textContent = i < 9 ? String(i + 1) : "";
    label.classList.toggle("on", i === state.cls);
    box.appendChild(label);
  });
}

function pickClass(i) {
  if (i < 0 || i >= state.categories.length) return;
  state.cls = i;
  const doc = state.doc, sel = doc && doc.selected;
  if (sel && sel.kind === "box" && doc.boxes[sel.i].category !== state.categories[i].name) {
    change(() => { doc.boxes[sel.i].category = state.categories[i].name; });  // recolour the selected box
  }
  renderClasses();
}

function renderQueue() {
  const list = $("queue");
  list.innerHTML = "";
  const q = state.queue;
  $("queue-count").textContent = `${q.reviewed} of ${q.images.length} saved`;
  q.images.forEach((im, i) => {
    const li = document.createElement("li");
    li.dataset.index = i;
    li.dataset.id = im.id;
    li.innerHTML = `<div class="name"></div><div class="reason"></div><div class="state"></div>`;
    li.querySelector(".name").textContent = (im.rank != null ? `#${im.rank} ` : `${i + 1}. `) + im.file_name;
    const labels = Object.entries(im.image_labels || {}).filter(([, v]) => v === 1).map(([k]) => k);
    const why = [];
    if (im.reason) why.push(im.reason + (im.score != null ? ` (${Number(im.score).toFixed(3)})` : ""));
    why.push(labels.length ? "labels: " + labels.join(", ") : im.supervision === "weak" ? "labels: none positive"
                                                                                        : "unlabeled");
    li.querySelector(".reason").textContent = why.join(" · ");
    const draft = state.drafts.get(String(im.id));
    const st = li.querySelector(".state");
    if (draft && draft.dirty) { st.className = "draft"; st.textContent = "● unsaved changes"; }
    else if (im.status === "reviewed") {
      st.className = "done";
      st.textContent = `✓ saved by ${im.reviewed_by} (rev ${im.revision})`;
    }
    li.classList.toggle("current", i === state.current);
    li.addEventListener("click", () => open(i));
    list.appendChild(li);
  });
}

async function open(i) {
  const q = state.queue;
  if (!q || i < 0 || i >= q.images.length) return;
  const im = q.images[i];
  const id = String(im.id);
  state.current = i;
  state.drag = null;
  hideConflict();
  renderQueue();
  const ticket = ++state.loading;
  setStatus(`loading ${im.file_name}…`);
  const wants = [api(`v1/annotate/images/${encodeURIComponent(id)}`)];
  const draft = state.drafts.get(id);
  if (!draft) {
    wants.push(api(`v1/annotate/images/${encodeURIComponent(id)}/annotation`));
    wants.push(api(`v1/annotate/images/${encodeURIComponent(id)}/proposals`));
  }
  const resps = await Promise.all(wants);
  if (ticket !== state.loading) return;  // another image was opened meanwhile
  for (const r of resps) {
    if (!r.ok) { setStatus(`${im.file_name}: ` + await errorText(r), "error"); return; }
  }
  const bitmap = await createImageBitmap(await resps[0].blob());
  let doc = draft;
  if (!doc) {
    const saved = await resps[1].json(), props = await resps[2].json();
    doc = newDoc(im, saved, props);
    state.drafts.set(id, doc);
  }
  if (ticket !== state.loading) return;
  state.image = bitmap;
  state.doc = doc;
  layout();
  render();
  setStatus(`${im.file_name}: ${im.width}×${im.height}, ${doc.proposals.length} proposals` +
            (doc.calibrated ? "" : " (uncalibrated: the model has no operating points)") +
            (doc.revision ? `; saved by ${doc.savedBy} at ${doc.savedAt} (revision ${doc.revision})` : ""));
}

function newDoc(im, saved, props) {
  return {
    id: String(im.id), fileName: im.file_name, width: im.width, height: im.height,
    proposals: props.proposals.map((p) => ({ category: p.category, score: p.score, box: p.box.slice(),
                                             status: "pending" })),
    calibrated: props.calibrated,
    boxes: saved.boxes.map((b) => ({ category: b.category, box: b.box.slice(), source: b.source, proposal: null })),
    noFinding: saved.revision > 0 && saved.no_finding,
    revision: saved.revision, savedBy: saved.by, savedAt: saved.at,
    selected: null, undo: [], dirty: false,
  };
}

// -- edits (each one undoable) -------------------------------------------------------------------------
function snapshot(doc) {
  return JSON.stringify({ p: doc.proposals.map((p) => p.status), b: doc.boxes, n: doc.noFinding });
}

function restore(doc, snap) {
  const s = JSON.parse(snap);
  s.p.forEach((st, i) => { doc.proposals[i].status = st; });
  doc.boxes = s.b;
  doc.noFinding = s.n;
  doc.selected = null;
}

function change(fn) {
  const doc = state.doc;
  if (!doc) return;
  doc.undo.push(snapshot(doc));
  if (doc.undo.length > 200) doc.undo.shift();
  fn(doc);
  doc.dirty = true;
  render();
}

function undo() {
  const doc = state.doc;
  if (!doc || !doc.undo.length) { setStatus("nothing to undo"); return; }
  restore(doc, doc.undo.pop());
  doc.dirty = true;
  render();
  setStatus("undone");
}

function acceptProposal(i) {
  const doc = state.doc, p = doc && doc.proposals[i];
  if (!p || p.status !== "pending") return false;
  change((d) => {
    p.status = "accepted";
    d.boxes.push({ category: p.category, box: p.box.slice(), source: "proposal", proposal: i });
    d.noFinding = false;
    d.selected = { kind: "box", i: d.boxes.length - 1 };
  });
  return true;
}

function acceptSelected() {
  const sel = state.doc && state.doc.selected;
  if (!sel || sel.kind !== "proposal" || !acceptProposal(sel.i)) {
    setStatus("select a proposal first (click a dashed box or a line of the proposal list)", "error");
  }
}

function rejectSelected() {
  const doc = state.doc, sel = doc && doc.selected;
  if (sel && sel.kind === "proposal" && doc.proposals[sel.i].status === "pending") {
    change((d) => { d.proposals[sel.i].status = "rejected"; d.selected = null; });
  } else if (sel && sel.kind === "box") {
    deleteSelected();
  } else {
    setStatus("select a proposal first (click a dashed box or a line of the proposal list)", "error");
  }
}

function deleteSelected() {
  const doc = state.doc, sel = doc && doc.selected;
  if (!sel) return;
  if (sel.kind === "proposal") { rejectSelected(); return; }
  change((d) => {
    const [gone] = d.boxes.splice(sel.i, 1);
    if (gone.proposal != null && d.proposals[gone.proposal]) d.proposals[gone.proposal].status = "rejected";
    d.selected = null;
  });
}

function toggleNoFinding() {
  const doc = state.doc;
  if (!doc) return;
  change((d) => {
    d.noFinding = !d.noFinding;
    if (d.noFinding) {  // a normal: no boxes, and no proposal is kept
      d.boxes = [];
      d.proposals.forEach((p) => { if (p.status !== "rejected") p.status = "rejected"; });
      d.selected = null;
    }
  });
}

// -- saving ----------------------------------------------------------------------------------------------
async function save() {
  const doc = state.doc;
  if (!doc) return;
  if (!doc.noFinding && !doc.boxes.length) {
    setStatus("nothing to save: draw the findings, or mark the image 'no finding' (N)", "error");
    return;
  }
  const body = {
    base_revision: doc.revision,
    no_finding: doc.noFinding,
    boxes: doc.noFinding ? [] : doc.boxes.map((b) => ({ category: b.category, box: b.box, source: b.source })),
  };
  setStatus(`saving ${doc.fileName}…`);
  const resp = await api(`v1/annotate/images/${encodeURIComponent(doc.id)}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (resp.status === 409) {
    const detail = (await resp.json()).detail;
    showConflict(detail);
    setStatus(`${doc.fileName}: not saved (conflict)`, "error");
    return;
  }
  if (!resp.ok) { setStatus(`${doc.fileName}: not saved: ` + await errorText(resp), "error"); return; }
  const out = await resp.json();
  doc.revision = out.revision;
  doc.savedBy = out.by;
  doc.savedAt = out.at;
  doc.dirty = false;
  hideConflict();
  const im = state.queue.images.find((x) => String(x.id) === doc.id);
  if (im) {
    if (im.status !== "reviewed") state.queue.reviewed += 1;
    Object.assign(im, { status: "reviewed", revision: out.revision, reviewed_by: out.by, reviewed_at: out.at,
                        boxes: out.boxes });
  }
  renderQueue();
  render();
  setStatus(`${doc.fileName}: saved ${doc.noFinding ? "as no finding" : out.boxes + " box(es)"} ` +
            `(revision ${out.revision}, ${out.by}, ${out.at})`, "ok");
}

function showConflict(text) {
  $("conflict-text").textContent = text;
  $("conflict").hidden = false;
}

function hideConflict() { $("conflict").hidden = true; }

async function loadSaved() {
  const doc = state.doc;
  if (!doc) return;
  state.drafts.delete(doc.id);
  await loadQueue();
  await open(state.current);
}

async function exportCoco() {
  const resp = await api("v1/annotate/export.coco");
  if (!resp.ok) { setStatus("export: " + await errorText(resp), "error"); return; }
  const blob = await resp.blob();
  const a = document.createElement("a");
  const name = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
  a.href = URL.createObjectURL(blob);
  a.download = name ? name[1] : "annotations.coco.json";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// -- view ------------------------------------------------------------------------------------------------
// The image fits the stage; the transform is kept on the canvas (data-scale, data-ox, data-oy: image
// pixel (x, y) is at css pixel (ox + x * scale, oy + y * scale) of the canvas).
function layout() {
  const canvas = $("view"), v = state.view;
  v.width = Math.max(1, canvas.clientWidth);
  v.height = Math.max(1, canvas.clientHeight);
  v.dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(v.width * v.dpr);
  canvas.height = Math.round(v.height * v.dpr);
  const doc = state.doc;
  if (doc) {
    v.scale = Math.min(v.width / doc.width, v.height / doc.height);
    v.ox = (v.width - doc.width * v.scale) / 2;
    v.oy = (v.height - doc.height * v.scale) / 2;
  }
  canvas.dataset.scale = v.scale;
  canvas.dataset.ox = v.ox;
  canvas.dataset.oy = v.oy;
}

function toImage(e) {
  const r = $("view").getBoundingClientRect(), v = state.view;
  return [(e.clientX - r.left - v.ox) / v.scale, (e.clientY - r.top - v.oy) / v.scale];
}

function render() {
  paint();
  renderLists();
}

function paint() {
  const canvas = $("view"), ctx = canvas.getContext("2d"), v = state.view, doc = state.doc;
  ctx.setTransform(v.dpr, 0, 0, v.dpr, 0, 0);
  ctx.clearRect(0, 0, v.width, v.height);
  if (!doc || !state.image) return;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(state.image, v.ox, v.oy, doc.width * v.scale, doc.height * v.scale);
  const sel = doc.selected;
  ctx.font = "12px system-ui, sans-serif";
  doc.proposals.forEach((p, i) => {
    if (p.status !== "pending") return;
    const on = sel && sel.kind === "proposal" && sel.i === i;
    drawBox(ctx, p.box, color(p.category), { dash: [6, 4], width: on ? 3 : 1.5,
                                             label: `${p.category} ${p.score.toFixed(2)}`, glow: on });
  });
  doc.boxes.forEach((b, i) => {
    const on = sel && sel.kind === "box" && sel.i === i;
    drawBox(ctx, b.box, color(b.category), { width: on ? 3 : 2, label: b.category, handles: on, glow: on });
  });
  const d = state.drag;
  if (d && d.mode === "draw" && d.box) {
    drawBox(ctx, d.box, color(state.categories[state.cls].name), { width: 2, label: state.categories[state.cls].name });
  }
  if (doc.noFinding) {
    ctx.fillStyle = "rgba(10, 107, 44, 0.85)";
    ctx.fillRect(v.ox, v.oy, 150, 24);
    ctx.fillStyle = "#fff";
    ctx.font = "bold 14px system-ui, sans-serif";
    ctx.fillText("no finding", v.ox + 8, v.oy + 17);
  }
}

function drawBox(ctx, box, col, o) {
  const v = state.view;
  const x = v.ox + box[0] * v.scale, y = v.oy + box[1] * v.scale, w = box[2] * v.scale, h = box[3] * v.scale;
  ctx.save();
  if (o.glow) { ctx.strokeStyle = "rgba(255,255,255,0.9)"; ctx.lineWidth = o.width + 3; ctx.strokeRect(x, y, w, h); }
  ctx.strokeStyle = col;
  ctx.lineWidth = o.width;
  ctx.setLineDash(o.dash || []);
  ctx.strokeRect(x, y, w, h);
  ctx.setLineDash([]);
  if (o.label) {
    const tw = ctx.measureText(o.label).width + 6;
    const ty = y >= 16 ? y - 16 : y + h;
    ctx.fillStyle = "rgba(0,0,0,0.6)";
    ctx.fillRect(x, ty, tw, 16);
    ctx.fillStyle = col;
    ctx.fillText(o.label, x + 3, ty + 12);
  }
  if (o.handles) {
    ctx.fillStyle = "#fff";
    ctx.strokeStyle = col;
    ctx.lineWidth = 1.5;
    for (const [cx, cy] of corners([x, y, w, h])) {
      ctx.fillRect(cx - HANDLE / 2 - 1, cy - HANDLE / 2 - 1, HANDLE + 2, HANDLE + 2);
      ctx.strokeRect(cx - HANDLE / 2 - 1, cy - HANDLE / 2 - 1, HANDLE + 2, HANDLE + 2);
    }
  }
  ctx.restore();
}

function corners(b) {
  return [[b[0], b[1]], [b[0] + b[2], b[1]], [b[0] + b[2], b[1] + b[3]], [b[0], b[1] + b[3]]];
}

function renderLists() {
  const doc = state.doc;
  const plist = $("proposal-list"), blist = $("box-list");
  plist.innerHTML = "";
  blist.innerHTML = "";
  if (!doc) return;
  const sel = doc.selected;
  doc.proposals.forEach((p, i) => {
    const li = item(p.category, (p.status === "pending" ? "" : p.status + " · ") + p.score.toFixed(3), p.category);
    li.dataset.index = i;
    li.classList.add(p.status);
    li.classList.toggle("selected", !!sel && sel.kind === "proposal" && sel.i === i);
    li.title = `proposal [x, y, w, h] = [${p.box.map((x) => x.toFixed(0)).join(", ")}] (${p.status})`;
    if (p.status === "pending") li.addEventListener("click", () => select({ kind: "proposal", i }));
    plist.appendChild(li);
  });
  doc.boxes.forEach((b, i) => {
    const li = item(b.category, b.source === "proposal" ? "accepted" : "drawn", b.category);
    li.dataset.index = i;
    li.classList.toggle("selected", !!sel && sel.kind === "box" && sel.i === i);
    li.title = `box [x, y, w, h] = [${b.box.map((x) => x.toFixed(0)).join(", ")}]`;
    li.addEventListener("click", () => select({ kind: "box", i }));
    blist.appendChild(li);
  });
  const st = $("image-state");
  const pending = doc.proposals.filter((p) => p.status === "pending").length;
  st.textContent = (doc.noFinding ? "no finding (a normal image)" : `${doc.boxes.length} box(es)`) +
    (pending ? `, ${pending} proposal(s) pending` : "") +
    (doc.dirty ? " · unsaved" : doc.revision ? ` · saved (revision ${doc.revision})` : " · not saved");
  st.className = doc.noFinding ? "normal" : "";
  $("caption").textContent = `${doc.fileName} · ${doc.width}×${doc.height} px` +
    (doc.revision ? ` · last saved by ${doc.savedBy} at ${doc.savedAt}` : "");
  const li = $("queue").querySelector(`li[data-index="${state.current}"] .state`);
  if (li && doc.dirty) { li.className = "draft"; li.textContent = "● unsaved changes"; }
}

function item(name, right, cat) {
  const li = document.createElement("li");
  li.innerHTML = `<span><span class="swatch"></span><span class="name"></span></span><span class="score"></span>`;
  li.querySelector(".swatch").style.background = color(cat);
  li.querySelector(".name").textContent = name;
  li.querySelector(".score").textContent = right;
  return li;
}

function select(sel) {
  if (!state.doc) return;
  state.doc.selected = sel;
  if (sel && sel.kind === "box") {
    const i = state.categories.findIndex((c) => c.name === state.doc.boxes[sel.i].category);
    if (i >= 0 && i !== state.cls) { state.cls = i; renderClasses(); }
  }
  render();
}

// -- mouse ------------------------------------------------------------------------------------------------
function inside(box, x, y, pad) {
  return x >= box[0] - pad && x <= box[0] + box[2] + pad && y >= box[1] - pad && y <= box[1] + box[3] + pad;
}

function hit(x, y) {
  const doc = state.doc, pad = 2 / state.view.scale, sel = doc.selected;
  if (sel && sel.kind === "box") {
    const b = doc.boxes[sel.i], r = (HANDLE + 2) / state.view.scale;
    const k = corners(b.box).findIndex(([cx, cy]) => Math.abs(cx - x) <= r && Math.abs(cy - y) <= r);
    if (k >= 0) return { kind: "corner", i: sel.i, corner: k };
  }
  const byArea = (list) => list.map((b, i) => [b, i]).sort((a, b) => a[0].box[2] * a[0].box[3] - b[0].box[2] * b[0].box[3]);
  for (const [b, i] of byArea(doc.boxes)) if (inside(b.box, x, y, pad)) return { kind: "box", i };
  for (const [p, i] of byArea(doc.proposals)) {
    if (p.status === "pending" && inside(p.box, x, y, pad)) return { kind: "proposal", i };
  }
  return null;
}

function clampBox(b, doc) {
  let [x, y, w, h] = b;
  w = Math.min(w, doc.width);
  h = Math.min(h, doc.height);
  x = Math.min(Math.max(0, x), doc.width - w);
  y = Math.min(Math.max(0, y), doc.height - h);
  return [x, y, w, h].map((v) => Math.round(v * 100) / 100);
}

function onDown(e) {
  const doc = state.doc;
  if (!doc || e.button !== 0) return;
  $("view").focus();
  const [x, y] = toImage(e);
  const h = hit(x, y);
  const d = { startX: x, startY: y, sx: e.clientX, sy: e.clientY, moved: false, snap: snapshot(doc) };
  if (h && h.kind === "corner") {
    const b = doc.boxes[h.i].box, c = corners(b)[(h.corner + 2) % 4];
    Object.assign(d, { mode: "resize", i: h.i, ax: c[0], ay: c[1] });
  } else if (h && h.kind === "box") {
    Object.assign(d, { mode: "move", i: h.i, orig: doc.boxes[h.i].box.slice() });
    doc.selected = { kind: "box", i: h.i };
    select(doc.selected);
  } else if (h && h.kind === "proposal") {
    Object.assign(d, { mode: "proposal", i: h.i });
    select({ kind: "proposal", i: h.i });
  } else {
    if (x < 0 || y < 0 || x > doc.width || y > doc.height) return;
    Object.assign(d, { mode: "draw", box: null });
    if (doc.selected) select(null);
  }
  state.drag = d;
  $("view").setPointerCapture(e.pointerId);
  e.preventDefault();
}

function onMove(e) {
  const d = state.drag, doc = state.doc;
  if (!d || !doc) return;
  const far = Math.abs(e.clientX - d.sx) + Math.abs(e.clientY - d.sy) >= MIN_DRAG;
  if (!d.moved && !far) return;
  const [x, y] = toImage(e);
  const cx = Math.min(Math.max(x, 0), doc.width), cy = Math.min(Math.max(y, 0), doc.height);
  if (!d.moved) {
    d.moved = true;
    if (d.mode === "proposal") {  // dragging a proposal accepts it, then moves the new box
      acceptProposal(d.i);
      const i = doc.boxes.length - 1;
      Object.assign(d, { mode: "move", i, orig: doc.boxes[i].box.slice() });
    } else if (d.mode !== "draw") {
      doc.undo.push(d.snap);
    }
  }
  if (d.mode === "draw") {
    d.box = [Math.min(d.startX, cx), Math.min(d.startY, cy), Math.abs(cx - d.startX), Math.abs(cy - d.startY)];
  } else if (d.mode === "move") {
    const o = d.orig;
    doc.boxes[d.i].box = clampBox([o[0] + x - d.startX, o[1] + y - d.startY, o[2], o[3]], doc);
    doc.dirty = true;
  } else if (d.mode === "resize") {
    const b = [Math.min(d.ax, cx), Math.min(d.ay, cy), Math.abs(cx - d.ax), Math.abs(cy - d.ay)];
    doc.boxes[d.i].box = clampBox([b[0], b[1], Math.max(1, b[2]), Math.max(1, b[3])], doc);
    doc.dirty = true;
  }
  paint();
}

function onUp(e) {
  const d = state.drag, doc = state.doc;
  state.drag = null;
  if (!d || !doc) return;
  if (d.mode === "draw" && d.moved && d.box && d.box[2] * state.view.scale >= MIN_DRAG &&
      d.box[3] * state.view.scale >= MIN_DRAG) {
    const box = clampBox(d.box, doc);
    change((dd) => {
      dd.boxes.push({ category: state.categories[state.cls].name, box, source: "drawn", proposal: null });
      dd.noFinding = false;
      dd.selected = { kind: "box", i: dd.boxes.length - 1 };
    });
    setStatus(`drew a ${state.categories[state.cls].name} box at [${box.map((v) => v.toFixed(0)).join(", ")}]`);
    return;
  }
  render();
}

// -- keys ---------------------------------------------------------------------------------------------------
function onKey(e) {
  const t = e.target;
  if (t && (t.tagName === "INPUT" && t.type !== "radio" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
  if (!$("token-box").hidden) return;
  const k = e.key, ctrl = e.ctrlKey || e.metaKey;
  if (ctrl && (k === "z" || k === "Z")) { e.preventDefault(); undo(); return; }
  if (ctrl && (k === "s" || k === "S")) { e.preventDefault(); save(); return; }
  if (ctrl || e.altKey) return;
  const actions = {
    a: acceptSelected, A: acceptSelected, r: rejectSelected, R: rejectSelected,
    Delete: deleteSelected, Backspace: deleteSelected, n: toggleNoFinding, N: toggleNoFinding,
    s: save, S: save,
    j: () => open(state.current + 1), ArrowRight: () => open(state.current + 1), ArrowDown: () => open(state.current + 1),
    k: () => open(state.current - 1), ArrowLeft: () => open(state.current - 1), ArrowUp: () => open(state.current - 1),
    Escape: () => { state.drag = null; select(null); },
  };
  if (actions[k]) { e.preventDefault(); actions[k](); return; }
  if (/^[1-9]$/.test(k)) { e.preventDefault(); pickClass(Number(k) - 1); }
}

// -- wiring -------------------------------------------------------------------------------------------------
const canvas = $("view");
canvas.addEventListener("pointerdown", onDown);
canvas.addEventListener("pointermove", onMove);
canvas.addEventListener("pointerup", onUp);
canvas.addEventListener("pointercancel", () => { state.drag = null; render(); });
document.addEventListener("keydown", onKey);
window.addEventListener("resize", () => { layout(); paint(); });
window.addEventListener("beforeunload", (e) => {
  for (const doc of state.drafts.values()) if (doc.dirty) { e.preventDefault(); e.returnValue = ""; return; }
});
$("accept").addEventListener("click", acceptSelected);
$("reject").addEventListener("click", rejectSelected);
$("delete").addEventListener("click", deleteSelected);
$("no-finding").addEventListener("click", toggleNoFinding);
$("undo").addEventListener("click", undo);
$("save").addEventListener("click", save);
$("prev").addEventListener("click", () => open(state.current - 1));
$("next").addEventListener("click", () => open(state.current + 1));
$("load-saved").addEventListener("click", loadSaved);
$("export").addEventListener("click", exportCoco);
start();
