// segindex web page, scene queries (docs/scenes.md): a text with an upper-case keyword ("red LEFT
// OF blue", "COUNT(person) >= 3 AND NOT car", "person WITH dog THEN car") goes to POST
// /search/scenes; each hit is a card: the image with each named part's mask (decoded from its
// COCO RLE here) drawn in the part's own colour, a legend, the score; for a video, the time span
// and each part's track on a timeline. A text that does not parse shows where (a caret).
"use strict";

// the server's rule (segindex/search/scenes/parse.py looks_like_scene): a keyword in upper case,
// outside "quoted phrases"
const SCENE_WORDS = new RegExp(
  "\\b(?:AND|OR|NOT|LEFT\\s+OF|RIGHT\\s+OF|ABOVE|BELOW|INSIDE|OVERLAPS|NEAR|LARGER\\s+THAN|" +
  "WITH|DURING|THEN)\\b|\\bCOUNT\\s*\\(");

// one colour per named part, in the order the hit lists them
const PART_COLOURS = ["#00e5ff", "#ffea00", "#ff2878", "#76ff03", "#d500f9", "#ff9100",
  "#2979ff", "#ffffff"];

function looksLikeScene(text) {
  return SCENE_WORDS.test(text.replace(/"[^"]*"/g, " "));
}

function hexRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

// COCO compressed RLE -> run lengths (pycocotools rleFrString)
function rleRuns(counts) {
  const runs = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return runs;
}

// COCO RLE {size: [h, w], counts} -> Uint8Array h*w in row order (the RLE runs down columns)
function decodeRle(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  let i = 0;
  rleRuns(rle.counts).forEach((run, n) => {
    if (n % 2 === 1) {
      for (let j = i; j < i + run; j += 1) mask[(j % h) * w + Math.floor(j / h)] = 1;
    }
    i += run;
  });
  return mask;
}

// the longest side of a card's mask canvas: larger images are drawn scaled down (the canvas is
// stretched over the image anyway)
const MASK_MAX_SIDE = 800;

// `mask` (h*w, row order) sampled to a w2*h2 grid (nearest pixel)
function resample(mask, h, w, h2, w2) {
  if (h2 === h && w2 === w) return mask;
  const out = new Uint8Array(h2 * w2);
  for (let y = 0; y < h2; y += 1) {
    const row = Math.min(h - 1, Math.floor((y * h) / h2)) * w;
    for (let x = 0; x < w2; x += 1) {
      out[y * w2 + x] = mask[row + Math.min(w - 1, Math.floor((x * w) / w2))];
    }
  }
  return out;
}

// paint `masks` ([{rle, colour}]) on a canvas of the image's shape: tinted inside, solid outline
function drawMasks(canvas, masks) {
  if (!masks.length) return;
  const [h0, w0] = masks[0].rle.size;
  const s = Math.min(1, MASK_MAX_SIDE / Math.max(h0, w0));
  const w = Math.max(1, Math.round(w0 * s));
  const h = Math.max(1, Math.round(h0 * s));
  canvas.width = w;
  canvas.height = h;
  const g = canvas.getContext("2d");
  const out = g.createImageData(w, h);
  for (const { rle, colour } of masks) {
    if (rle.size[0] !== h0 || rle.size[1] !== w0) continue;
    const m = resample(decodeRle(rle), h0, w0, h, w);
    const [r, gr, b] = hexRgb(colour);
    for (let at = 0; at < m.length; at += 1) {
      if (!m[at]) continue;
      const x = at % w;
      const y = (at - x) / w;
      // the outline: 2 px wide, inside the mask
      const edge = x < 2 || y < 2 || x > w - 3 || y > h - 3 || !m[at - 1] || !m[at - 2] ||
        !m[at + 1] || !m[at + 2] || !m[at - w] || !m[at - 2 * w] || !m[at + w] ||
        !m[at + 2 * w];
      out.data.set([r, gr, b, edge ? 255 : 150], at * 4);
    }
  }
  g.putImageData(out, 0, 0);
}

function showQueryError(query, data) {
  const box = $("query-error");
  const detail = data.detail || data.error || "the query does not parse";
  setStatus(`Error ${data.status || 422}: ${detail}`, true);
  if (data.position === null || data.position === undefined) { box.hidden = true; return; }
  const at = Math.max(0, Math.min(query.length, data.position));
  $("query-error-text").textContent = `${query}\n${" ".repeat(at)}^`;
  $("query-error-where").textContent = `at character ${at}`;
  box.hidden = false;
}

async function searchScenes(text) {
  const options = commonOptions();
  const body = { query: text, k: Math.min(options.k, 200),
    scope: options.scope === "tracks" ? "videos" : "images" };
  state.query = null;  // no pages for scenes
  $("query-error").hidden = true;
  setStatus("Searching scenes…");
  let response;
  try {
    response = await fetch("/search/scenes", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    setStatus(`The service did not answer: ${err}`, true);
    return;
  }
  const data = await response.json().catch(() => ({ error: response.statusText }));
  $("grid").replaceChildren();
  $("page-info").textContent = "";
  $("prev").disabled = true;
  $("next").disabled = true;
  if (!response.ok) {
    if (response.status === 422 && "position" in data) { showQueryError(text, data); return; }
    setStatus(`Error ${response.status}: ${data.detail || data.error || "request failed"}`, true);
    return;
  }
  renderScenes(data, body.scope);
}

function legendItem(name, colour, text, onOpen) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "part";
  button.dataset.part = name;
  button.dataset.colour = colour;
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = colour;
  const label = document.createElement("span");
  label.className = "part-name";
  label.textContent = name;
  const rest = document.createElement("span");
  rest.className = "muted";
  rest.textContent = text;
  button.append(swatch, label, rest);
  button.addEventListener("click", onOpen);
  li.append(button);
  return li;
}

function imageCard(hit, card, parts) {
  const pic = document.createElement("div");
  pic.className = "scene-pic";
  const img = document.createElement("img");
  img.src = hit.urls.image;
  img.alt = `${hit.image_path.split(/[\\/]/).pop()} with the parts' masks drawn`;
  const canvas = document.createElement("canvas");
  canvas.className = "masks";
  canvas.setAttribute("aria-hidden", "true");
  drawMasks(canvas, parts.flatMap(({ regions, colour }) =>
    regions.map((r) => ({ rle: r.rle, colour }))));
  pic.append(img, canvas);
  card.append(pic);
}

function videoCard(hit, card, parts) {
  // the span, and each part's track as a bar on it, over a strip of the tracks' best frames
  const span = document.createElement("p");
  span.className = "span";
  span.textContent = `${formatTime(hit.start_s)}–${formatTime(hit.end_s)}`;
  const strip = document.createElement("div");
  strip.className = "scene-tracks";
  const timeline = document.createElement("div");
  timeline.className = "timeline";
  const t0 = Math.min(hit.start_s, ...parts.flatMap((p) => p.regions.map((r) => r.start_s)));
  const t1 = Math.max(hit.end_s, ...parts.flatMap((p) => p.regions.map((r) => r.end_s)));
  const length = Math.max(t1 - t0, 1e-6);
  for (const { name, regions, colour } of parts) {
    for (const t of regions) {
      const img = document.createElement("img");
      img.src = t.urls.thumb;
      img.alt = `${name}: ${t.label}, ${formatTime(t.start_s)}–${formatTime(t.end_s)}`;
      img.style.borderColor = colour;
      strip.append(img);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.background = colour;
      bar.style.left = `${(100 * (t.start_s - t0)) / length}%`;
      bar.style.width = `${Math.max(1, (100 * (t.end_s - t.start_s)) / length)}%`;
      bar.title = `${name} ${formatTime(t.start_s)}–${formatTime(t.end_s)}`;
      timeline.append(bar);
    }
  }
  card.append(strip, span, timeline);
}

function renderScenes(data, scope) {
  const grid = $("grid");
  data.hits.forEach((hit, i) => {
    const li = document.createElement("li");
    const card = document.createElement("article");
    card.className = `scene-hit ${hit.kind}`;
    card.dataset.imageId = hit.image_id;
    const name = hit.image_path.split(/[\\/]/).pop();
    card.setAttribute("aria-label", `Scene ${i + 1}: ${name}, score ${hit.score.toFixed(3)}`);
    const parts = Object.entries(hit.parts).map(([part, regions], n) =>
      ({ name: part, regions, colour: PART_COLOURS[n % PART_COLOURS.length] }));
    if (hit.kind === "video") videoCard(hit, card, parts); else imageCard(hit, card, parts);
    const meta = document.createElement("div");
    meta.className = "meta";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}`;
    const legend = document.createElement("ul");
    legend.className = "legend";
    for (const { name: part, regions, colour } of parts) {
      const best = regions[0];
      const count = regions.length > 1 ? ` ×${regions.length}` : "";
      const sim = best && best.similarity !== null && best.similarity !== undefined
        ? ` · ${best.similarity.toFixed(2)}` : "";
      const when = hit.kind === "video" && best
        ? ` · ${formatTime(best.start_s)}–${formatTime(best.end_s)}` : "";
      legend.append(legendItem(part, colour, `${count}${sim}${when}`, () => {
        if (!best) return;
        if (hit.kind === "video") openTrack(best); else openDetail(best);
      }));
    }
    const path = document.createElement("span");
    path.className = "path";
    path.textContent = name;
    meta.append(score, legend, path);
    card.append(meta);
    li.append(card);
    grid.append(li);
  });
  const what = scope === "videos" ? "video spans" : "images";
  setStatus(data.hits.length
    ? `${data.hits.length} ${what} where the scene holds, ${data.took_ms} ms`
    : `No ${what} where the scene holds.`);
}
