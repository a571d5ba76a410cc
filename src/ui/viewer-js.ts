/**
 * The viewer's script, plain JavaScript served as is (no build step).
 *
 * It lists a namespace's snapshots, then streams one NDJSON answer of the
 * HTTP/JSON surface (`allocated`, or `delta` against a base) with fetch and
 * a ReadableStream, painting blocks as records arrive. A stream counts as
 * complete only when its end record arrived and agrees with the tuples
 * counted; an error record, a cut connection or a stop leaves it
 * "incomplete", and Resume continues from the last nextOffset.
 *
 * The volume is a grid of cells: one cell per 4 KiB block up to 512×512
 * cells, beyond that each cell (then one pixel) covers a run of blocks and its
 * shade says how much of the run is marked. Dirty rows are repainted as pixel
 * rows (ImageData), once per animation frame.
 *
 * `window.__blockMap` exposes the state for tests and curious users.
 */
export const VIEWER_JS = String.raw`"use strict";
const BLOCK = 4096;
const MAX_COLS = 512;
const MAX_CELLS = MAX_COLS * MAX_COLS;
const WIDTH_PX = 768;
const EMPTY = [229, 231, 235];
const FULL = { allocated: [37, 99, 235], delta: [234, 88, 12] };

const $ = (id) => document.getElementById(id);
const el = {
  form: $("controls"), ns: $("ns"), list: $("list"), snap: $("snap"),
  base: $("base"), token: $("token"), draw: $("draw"), stop: $("stop"),
  resume: $("resume"), status: $("status"), totals: $("totals"),
  canvas: $("map"), legend: $("legend"),
};
const ctx = el.canvas.getContext("2d");

const view = {
  state: "idle", // idle | streaming | complete | incomplete | failed
  snapshots: [],
  request: null, // { ns, snap, mode, base }
  header: null,
  end: null,
  error: null,
  nextOffset: 0,
  totals: { tuples: 0, bytes: 0, segments: 0 },
  layout: null,
  coverage: null, // bytes marked per cell
  markedCells() {
    const out = [];
    if (this.coverage) this.coverage.forEach((v, i) => v > 0 && out.push(i));
    return out;
  },
  /** Reads the canvas back: the cells whose centre pixel is not the empty colour. */
  paintedCells() {
    const L = this.layout;
    if (!L) return [];
    const px = ctx.getImageData(0, 0, el.canvas.width, el.canvas.height).data;
    const out = [];
    const mid = Math.floor((L.cellPx - L.gap - 1) / 2);
    for (let i = 0; i < L.cells; i++) {
      const x = (i % L.cols) * L.cellPx + mid;
      const y = Math.floor(i / L.cols) * L.cellPx + mid;
      const p = (y * el.canvas.width + x) * 4;
      if (px[p] !== EMPTY[0] || px[p + 1] !== EMPTY[1] || px[p + 2] !== EMPTY[2]) out.push(i);
    }
    return out;
  },
};
window.__blockMap = view;

function layoutFor(capacity) {
  const blocks = Math.max(1, Math.ceil(capacity / BLOCK));
  const blocksPerCell = Math.ceil(blocks / MAX_CELLS);
  const cells = Math.ceil(blocks / blocksPerCell);
  let cols = 16;
  while (cols * cols < cells && cols < MAX_COLS) cols *= 2;
  const cellPx = Math.max(1, Math.min(48, Math.floor(WIDTH_PX / cols)));
  return {
    capacity, blocks, blocksPerCell, bytesPerCell: blocksPerCell * BLOCK,
    cells, cols, rows: Math.ceil(cells / cols), cellPx, gap: cellPx >= 6 ? 1 : 0,
  };
}

// ---- painting ----

const dirtyRows = new Set();
let frame = 0;

function startMap(capacity) {
  const L = view.layout = layoutFor(capacity);
  view.coverage = new Float64Array(L.cells);
  el.canvas.width = L.cols * L.cellPx;
  el.canvas.height = L.rows * L.cellPx;
  for (let r = 0; r < L.rows; r++) dirtyRows.add(r);
  flush();
  const run = L.bytesPerCell === BLOCK ? "one 4 KiB block" : "a run of " + L.blocksPerCell.toLocaleString() + " blocks (" + bytes(L.bytesPerCell) + ")";
  const mode = view.request.mode;
  el.legend.replaceChildren(
    swatch(mode), mode === "delta" ? "changed" : "allocated",
    swatch("empty"), mode === "delta" ? "unchanged" : "not allocated",
    " · " + L.blocks.toLocaleString() + " blocks of " + bytes(capacity) + "; one cell is " + run,
  );
}

function swatch(kind) {
  const s = document.createElement("span");
  s.className = "swatch " + kind;
  return s;
}

function mark(offset, length) {
  const L = view.layout;
  if (!(offset >= 0 && length > 0)) throw new Error("bad tuple " + offset + "+" + length);
  const end = Math.min(offset + length, L.capacity);
  for (let o = offset; o < end;) {
    const cell = Math.floor(o / L.bytesPerCell);
    const cellEnd = Math.min((cell + 1) * L.bytesPerCell, end);
    view.coverage[cell] += cellEnd - o;
    dirtyRows.add(Math.floor(cell / L.cols));
    o = cellEnd;
  }
  if (!frame) frame = requestAnimationFrame(flush);
}

function colourOf(cell) {
  const L = view.layout;
  const size = Math.min(L.bytesPerCell, L.capacity - cell * L.bytesPerCell);
  const f = view.coverage[cell] / size;
  if (f <= 0) return EMPTY;
  const full = FULL[view.request.mode];
  const t = 0.4 + 0.6 * Math.min(1, f); // any marked byte stays visible
  return EMPTY.map((e, i) => Math.round(e + (full[i] - e) * t));
}

function flush() {
  if (frame) cancelAnimationFrame(frame);
  frame = 0;
  const L = view.layout;
  if (!L) return;
  const w = L.cols * L.cellPx, h = L.cellPx, inner = L.cellPx - L.gap;
  for (const r of dirtyRows) {
    const img = ctx.createImageData(w, h); // transparent: gaps and cells past the end
    const d = img.data;
    for (let c = 0; c < L.cols; c++) {
      const cell = r * L.cols + c;
      if (cell >= L.cells) break;
      const rgb = colourOf(cell);
      for (let y = 0; y < inner; y++) {
        for (let x = 0; x < inner; x++) {
          const p = (y * w + c * L.cellPx + x) * 4;
          d[p] = rgb[0]; d[p + 1] = rgb[1]; d[p + 2] = rgb[2]; d[p + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, 0, r * h);
  }
  dirtyRows.clear();
}

// ---- streaming ----

let controller = null;

function apiUrl(path, params) {
  const url = new URL("../v1/namespaces/" + path, location.href);
  for (const [k, v] of Object.entries(params ?? {})) url.searchParams.set(k, String(v));
  return url;
}

function headers() {
  const token = el.token.value.trim();
  return token ? { authorization: "Bearer " + token } : {};
}

async function httpError(response) {
  let body = {};
  try { body = await response.json(); } catch { /* not JSON */ }
  const err = new Error((body.code ?? "HTTP " + response.status) + ": " + (body.message ?? response.statusText));
  err.code = body.code ?? "http_" + response.status;
  return err;
}

/** Calls onRecord for each NDJSON line as it arrives; a trailing partial line is dropped (a cut stream). */
async function readRecords(response, onRecord) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const lines = (rest + value).split("\n");
    rest = lines.pop();
    for (const line of lines) if (line.trim() !== "") onRecord(JSON.parse(line));
  }
}

async function draw(resume) {
  controller?.abort();
  const mine = controller = new AbortController();
  if (!resume) {
    const mode = document.querySelector("input[name=mode]:checked").value;
    view.request = { ns: el.ns.value.trim(), snap: el.snap.value, mode, base: el.base.value };
    Object.assign(view, { header: null, layout: null, coverage: null, nextOffset: 0, totals: { tuples: 0, bytes: 0, segments: 0 } });
    el.canvas.width = el.canvas.height = 0;
    el.legend.textContent = "";
  }
  Object.assign(view, { end: null, error: null });
  const req = view.request;
  const segment = { tuples: 0, ended: false };
  setState("streaming", (resume ? "Resuming " : "Streaming ") + describe(req) + "…");
  try {
    const params = { startingOffset: view.nextOffset };
    if (req.mode === "delta") params.baseSnapshotName = req.base;
    const url = apiUrl(encodeURIComponent(req.ns) + "/snapshots/" + encodeURIComponent(req.snap) + "/" + req.mode, params);
    const response = await fetch(url, { headers: { accept: "application/x-ndjson", ...headers() }, signal: mine.signal, cache: "no-store" });
    if (!response.ok) throw await httpError(response);
    await readRecords(response, (record) => onRecord(record, segment));
  } catch (err) {
    if (controller !== mine) return; // a newer draw took over
    if (mine.signal.aborted) view.error = { code: "stopped", message: "stopped by you" };
    else if (!view.error || err.code) {
      view.error = { code: typeof err.code === "string" ? err.code : "client", message: String(err.message ?? err) };
    }
  }
  if (controller !== mine) return;
  controller = null;
  flush();
  view.totals.segments++;
  if (segment.ended) setState("complete", "Complete: " + describe(req) + ".");
  else if (!view.layout) setState("failed", "Failed: " + view.error.message);
  else {
    const why = view.error ? view.error.code + ": " + view.error.message : "the stream ended without an end record";
    setState("incomplete", "Incomplete — " + why + ". Resume continues from offset " + view.nextOffset.toLocaleString() + ".");
  }
}

function onRecord(record, segment) {
  switch (record.type) {
    case "header":
      if (!view.layout) startMap(capacityOf(record));
      else if (capacityOf(record) !== view.layout.capacity) throw new Error("the volume's capacity changed; draw again");
      view.header ??= record;
      break;
    case "blocks":
      for (const b of record.blocks) mark(b.offset, b.length);
      segment.tuples += record.blocks.length;
      view.totals.tuples += record.blocks.length;
      view.totals.bytes += record.blocks.reduce((n, b) => n + b.length, 0);
      view.nextOffset = record.nextOffset;
      showTotals();
      break;
    case "end":
      if (record.tuples !== segment.tuples) {
        throw new Error("end record counts " + record.tuples + " tuples, " + segment.tuples + " arrived");
      }
      view.end = record;
      segment.ended = true;
      break;
    case "error":
      view.error = record;
      view.nextOffset = record.nextOffset;
      break;
    // heartbeat and unknown records: nothing to draw
  }
}

/** The header's capacity, else the listed one (a backend may not know it). */
function capacityOf(header) {
  const listed = view.snapshots.find((s) => s.name === view.request.snap);
  const capacity = header.volumeCapacityBytes || listed?.volumeCapacityBytes;
  if (!(capacity > 0)) throw new Error("the volume's capacity is unknown");
  return capacity;
}

function describe(req) {
  return req.mode === "delta" ? "blocks of " + req.snap + " changed since " + req.base : "allocated blocks of " + req.snap;
}

function showTotals() {
  const L = view.layout;
  const pct = L ? " (" + (100 * view.totals.bytes / L.capacity).toFixed(2) + "% of " + bytes(L.capacity) + ")" : "";
  el.totals.textContent = view.totals.tuples.toLocaleString() + " extents, " + bytes(view.totals.bytes) + pct;
}

function setState(state, message) {
  view.state = state;
  document.body.dataset.state = state;
  el.status.textContent = message;
  el.stop.disabled = state !== "streaming";
  el.resume.hidden = state !== "incomplete";
  showTotals();
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (Number.isInteger(n) ? n : n.toFixed(1)) + " " + units[i];
}

// ---- snapshots ----

async function listSnapshots() {
  controller?.abort(); // a new listing replaces whatever was being drawn
  controller = null;
  const ns = el.ns.value.trim();
  setState("idle", "Listing snapshots of " + ns + "…");
  try {
    const response = await fetch(apiUrl(encodeURIComponent(ns) + "/snapshots"), { headers: headers(), cache: "no-store" });
    if (!response.ok) throw await httpError(response);
    view.snapshots = (await response.json()).snapshots;
    el.snap.replaceChildren(...view.snapshots.map((s) => new Option(s.name + " (" + s.volume + ", " + bytes(s.volumeCapacityBytes) + ")", s.name)));
    el.snap.selectedIndex = view.snapshots.length - 1; // the newest, usually
    fillBases();
    setState("idle", view.snapshots.length ? "Pick a snapshot and draw." : "No snapshots in " + ns + ".");
  } catch (err) {
    view.snapshots = [];
    el.snap.replaceChildren();
    fillBases();
    setState("failed", "Listing snapshots failed: " + err.message);
  }
}

/** Delta bases: the other snapshots of the same volume, the one listed before the target first. */
function fillBases() {
  const target = view.snapshots.find((s) => s.name === el.snap.value);
  const bases = target ? view.snapshots.filter((s) => s.volume === target.volume && s.name !== target.name) : [];
  const before = bases.filter((s) => view.snapshots.indexOf(s) < view.snapshots.indexOf(target));
  el.base.replaceChildren(...bases.map((s) => new Option(s.name, s.name)));
  if (before.length) el.base.value = before[before.length - 1].name;
  syncMode();
}

function syncMode() {
  const delta = document.querySelector("input[name=mode]:checked").value === "delta";
  el.base.disabled = !delta;
  el.draw.disabled = !el.snap.value || (delta && !el.base.value);
}

el.form.addEventListener("submit", (e) => { e.preventDefault(); draw(false); });
el.resume.addEventListener("click", () => draw(true));
el.stop.addEventListener("click", () => controller?.abort());
el.list.addEventListener("click", listSnapshots);
el.snap.addEventListener("change", fillBases);
for (const r of document.querySelectorAll("input[name=mode]")) r.addEventListener("change", syncMode);
const fromUrl = new URLSearchParams(location.search).get("ns");
if (fromUrl) el.ns.value = fromUrl;
listSnapshots();
`;
