// segindex web page: vanilla JS, no build step, no network beyond this service.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  query: null,     // the search body last sent (without offset)
  file: null,      // the uploaded query image (File) for image/region searches
  offset: 0,
  image: null,     // HTMLImageElement of the uploaded file
  box: null,       // [x0, y0, x1, y1] in image pixels
  detailRegion: null,
};

function splitList(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function commonOptions() {
  const filters = {};
  const labels = splitList($("f-labels").value);
  const exclude = splitList($("f-exclude").value);
  if (labels.length) filters.labels = labels;
  if (exclude.length) filters.exclude_labels = exclude;
  const score = numberOrNull("f-score");
  if (score !== null) filters.min_score = score;
  for (const [id, key] of [["f-duration", "min_duration_s"], ["f-from", "time_from_s"],
    ["f-to", "time_to_s"]]) {
    const value = numberOrNull(id);
    if (value !== null) filters[key] = value;
  }
  const body = {
    k: Math.max(1, Math.min(200, Number($("f-k").value) || 24)),
    scope: $("f-scope").value,
    group_by_image: $("f-group").checked,
    filters,
  };
  const sim = numberOrNull("f-sim");
  if (sim !== null) body.min_similarity = sim;
  const negative = splitList($("negative").value);
  if (negative.length) body.negative = negative;
  return body;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function send(offset) {
  if (!state.query) return;
  const body = { ...state.query, offset };
  let response;
  setStatus("Searching…");
  try {
    if (state.file) {
      const form = new FormData();
      form.append("image", state.file);
      form.append("query", JSON.stringify(body));
      response = await fetch("/search", { method: "POST", body: form });
    } else {
      response = await fetch("/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    }
  } catch (err) {
    setStatus(`The service did not answer: ${err}`, true);
    return;
  }
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    setStatus(`Error ${response.status}: ${data.error || "request failed"}`, true);
    return;
  }
  state.offset = offset;
  render(data);
}

function render(data) {
  const grid = $("grid");
  grid.replaceChildren();
  data.hits.forEach((hit, i) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "hit";
    button.dataset.regionId = hit.region_id;
    const name = hit.image_path.split(/[\\/]/).pop();
    button.setAttribute("aria-label",
      `Result ${data.offset + i + 1}: ${hit.label} in ${name}, similarity ${hit.similarity.toFixed(3)}`);
    const img = document.createElement("img");
    img.src = hit.urls.thumb;
    img.alt = `${hit.label} (mask outlined)`;
    img.loading = "lazy";
    const meta = document.createElement("div");
    meta.className = "meta";
    const isTrack = hit.kind === "track";
    const where = isTrack ? "in video" : "in image";
    const count = hit.image_matches ? ` · ${hit.image_matches} ${where}` : "";
    const lines = [
      ["label", hit.label],
      ["", `similarity ${hit.similarity.toFixed(3)} · score ${hit.score.toFixed(2)}${count}`],
    ];
    if (isTrack) {
      button.classList.add("track");
      lines.push(["span", `${formatTime(hit.start_s)}–${formatTime(hit.end_s)} · ` +
        `${hit.n_frames} frames`]);
    } else if (hit.time_s !== undefined && hit.time_s !== null) {
      lines.push(["span", `frame at ${formatTime(hit.time_s)}`]);
    }
    lines.push(["path", name]);
    for (const [cls, text] of lines) {
      const span = document.createElement("span");
      if (cls) span.className = cls;
      span.textContent = text;
      meta.append(span);
    }
    button.append(img, meta);
    button.addEventListener("click", () => (isTrack ? openTrack(hit) : openDetail(hit)));
    li.append(button);
    grid.append(li);
  });
  const first = data.offset + 1;
  const last = data.offset + data.hits.length;
  const how = data.query_regions && data.query_regions.length
    ? ` (query region from ${data.query_regions[0].method})` : "";
  setStatus(data.hits.length
    ? `Results ${first}–${last}${data.has_more ? "" : " (end)"}${how}, ${data.took_ms} ms`
    : "No regions match.");
  $("page-info").textContent = data.hits.length ? `page ${Math.floor(data.offset / data.k) + 1}` : "";
  $("prev").disabled = data.offset === 0;
  $("next").disabled = !data.has_more;
}

function startSearch(query, file) {
  $("query-error").hidden = true;
  state.query = query;
  state.file = file;
  send(0);
}

$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("q").value.trim();
  if (!text) {
    setStatus("Type something to search for.", true);
    $("q").focus();
    return;
  }
  if (looksLikeScene(text)) { searchScenes(text); return; }  // scenes.js
  startSearch({ ...commonOptions(), text }, null);
});

$("prev").addEventListener("click", () => send(Math.max(0, state.offset - state.query.k)));
$("next").addEventListener("click", () => send(state.offset + state.query.k));

// -- the query image and its box -------------------------------------------------------------

const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const boxInputs = ["bx0", "by0", "bx1", "by1"].map($);

function scale() {
  return state.image ? canvas.width / state.image.naturalWidth : 1;
}

function draw() {
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  if (!state.box) return;
  const s = scale();
  const [x0, y0, x1, y1] = state.box.map((v) => v * s);
  ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
  ctx.fillRect(0, 0, canvas.width, y0);
  ctx.fillRect(0, y1, canvas.width, canvas.height - y1);
  ctx.fillRect(0, y0, x0, y1 - y0);
  ctx.fillRect(x1, y0, canvas.width - x1, y1 - y0);
  ctx.strokeStyle = "#ff2878";
  ctx.lineWidth = 2;
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
}

function setBox(box) {
  state.box = box;
  boxInputs.forEach((input, i) => { input.value = box ? Math.round(box[i]) : ""; });
  $("region-btn").disabled = !box;
  $("clear-btn").disabled = !box;
  draw();
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) return;
  const img = new Image();
  img.onload = () => {
    state.image = img;
    state.uploaded = file;
    const width = Math.min(480, img.naturalWidth * 4);
    canvas.width = width;
    canvas.height = Math.round(width * img.naturalHeight / img.naturalWidth);
    canvas.hidden = false;
    $("whole-btn").disabled = false;
    setBox(null);
    setStatus("Drag on the image to draw a box around an object.");
  };
  img.onerror = () => setStatus("This file cannot be shown as an image.", true);
  img.src = URL.createObjectURL(file);
});

function toImage(event) {
  const rect = canvas.getBoundingClientRect();
  const s = state.image.naturalWidth / rect.width;
  const x = Math.min(Math.max(0, (event.clientX - rect.left) * s), state.image.naturalWidth);
  const y = Math.min(Math.max(0, (event.clientY - rect.top) * s), state.image.naturalHeight);
  return [x, y];
}

let dragStart = null;
canvas.addEventListener("pointerdown", (event) => {
  if (!state.image) return;
  canvas.setPointerCapture(event.pointerId);
  dragStart = toImage(event);
});
canvas.addEventListener("pointermove", (event) => {
  if (!dragStart) return;
  const [x, y] = toImage(event);
  const [sx, sy] = dragStart;
  setBox([Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)]);
});
canvas.addEventListener("pointerup", (event) => {
  if (!dragStart) return;
  const [x, y] = toImage(event);
  const [sx, sy] = dragStart;
  dragStart = null;
  if (Math.abs(x - sx) < 2 || Math.abs(y - sy) < 2) { setBox(null); return; }
  setBox([Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)]);
  searchRegion();
});

boxInputs.forEach((input) => input.addEventListener("change", () => {
  const values = boxInputs.map((i) => Number(i.value));
  if (boxInputs.every((i) => i.value !== "") && values[2] > values[0] && values[3] > values[1]) {
    setBox(values);
  }
}));

function searchRegion() {
  if (!state.uploaded || !state.box) return;
  startSearch({ ...commonOptions(), region: { box: state.box.map((v) => Math.round(v)) } },
    state.uploaded);
}

$("region-btn").addEventListener("click", searchRegion);
$("whole-btn").addEventListener("click", () => {
  if (state.uploaded) startSearch({ ...commonOptions() }, state.uploaded);
});
$("clear-btn").addEventListener("click", () => setBox(null));

// -- detail: the whole image with its regions ------------------------------------------------

async function openDetail(hit) {
  if (hit.track_id !== undefined && hit.track_id !== null) {
    openTrack({ track_id: hit.track_id });  // a region of a video frame: its track
    return;
  }
  const dialog = $("detail");
  $("detail-title").textContent = hit.image_path;
  $("overlay").src = hit.urls.overlay;
  state.detailRegion = hit.region_id;
  $("detail-info").textContent =
    `Selected: ${hit.label} (region ${hit.region_id}), score ${hit.score.toFixed(2)}, ` +
    `area ${hit.area} px`;
  $("region-list").replaceChildren();
  dialog.showModal();
  $("more-like").focus();
  const response = await fetch(`/images/${hit.image_id}/regions`);
  if (!response.ok) return;
  const image = await response.json();
  for (const region of image.regions) {
    if (region.kind !== "segment") continue;
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `${region.label} · score ${region.score.toFixed(2)} · ${region.area} px`;
    button.setAttribute("aria-pressed", String(region.region_id === state.detailRegion));
    button.addEventListener("click", () => {
      state.detailRegion = region.region_id;
      $("detail-info").textContent = `Selected: ${region.label} (region ${region.region_id})`;
      document.querySelectorAll("#region-list button").forEach((b) =>
        b.setAttribute("aria-pressed", String(b === button)));
    });
    li.append(button);
    $("region-list").append(li);
  }
}

$("more-like").addEventListener("click", () => {
  $("detail").close();
  startSearch({ ...commonOptions(), similar_to: state.detailRegion }, null);
});
$("close-detail").addEventListener("click", () => $("detail").close());

// -- stats and label suggestions ---------------------------------------------------------------

fetch("/stats").then((r) => r.json()).then((stats) => {
  const c = stats.counts;
  const v = stats.videos || { videos: 0, tracks: 0 };
  const videos = v.videos ? ` · ${v.videos} videos · ${v.tracks} tracks` : "";
  $("stats").textContent = `${c.images_indexed - v.videos} images${videos} · ${c.regions} regions`;
  const list = $("label-list");
  for (const { label } of stats.labels.slice(0, 100)) {
    const option = document.createElement("option");
    option.value = label;
    list.append(option);
  }
}).catch(() => {});
