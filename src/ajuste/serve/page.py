"""The try-it page at ``/``: plain HTML and a little inline JavaScript, nothing loaded from anywhere.

It holds no data: the models, the predictions and a tuning run's report come from the API, with the key
typed in its field when the server asks for one (the field appears on the first 401). Every text the
server sends back is written with ``textContent``, never as HTML: labels come from training data.
"""

from __future__ import annotations

__all__ = ["PAGE", "PAGE_POLICY"]

#: The page's Content-Security-Policy: inline script and style only, requests to this server only.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>ajuste serve</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }
  h1 { font-size: 1.3rem; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; padding: .4rem; }
  .row { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; margin: .6rem 0; }
  button { font: inherit; padding: .3rem 1.2rem; }
  .result { border-top: 1px solid #ddd; padding: .6rem 0; }
  .text { color: #555; white-space: pre-wrap; overflow-wrap: anywhere; }
  .label { font-weight: 600; margin: .2rem 0; }
  .bar { display: grid; grid-template-columns: minmax(4rem, 12rem) 1fr 4rem; gap: .6rem; align-items: center; }
  .track { background: #e8e8ed; height: .8rem; border-radius: .2rem; overflow: hidden; }
  .fill { background: #3a6ea5; height: 100%; }
  .p { text-align: right; font-variant-numeric: tabular-nums; }
  .error { color: #b00020; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<h1>ajuste serve</h1>
<div class="row">
  <label id="key-field" hidden>API key <input id="key" type="password" autocomplete="off"></label>
  <label id="model-field" hidden>Model <select id="model"></select></label>
  <a id="report" href="#" target="_blank" rel="noopener" hidden>tuning report</a>
</div>
<label for="texts">Texts, one per line</label>
<textarea id="texts" rows="6" placeholder="One text per line"></textarea>
<div class="row">
  <button id="predict" type="button">Predict</button>
  <span id="status" role="status"></span>
</div>
<div id="results"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let models = [];

function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function say(message, isError) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

function headers() {
  const key = $("key").value.trim();
  const sent = {"Content-Type": "application/json"};
  if (key) sent["Authorization"] = "Bearer " + key;
  return sent;
}

function problem(body, status) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((e) => (e.loc || []).slice(1).join(".") + ": " + e.msg).join("; ");
  return detail || "the server answered " + status;
}

async function call(path, options) {
  const response = await fetch(path, Object.assign({headers: headers()}, options));
  const body = await response.json().catch(() => null);
  if (response.status === 401) $("key-field").hidden = false;
  if (!response.ok) throw new Error(problem(body, response.status));
  return body;
}

function chosen() {
  return models.find((m) => m.name === $("model").value) || models[0];
}

function showReport() {
  const model = chosen();
  const link = $("report");
  link.hidden = !(model && model.report);
  if (model && model.report) link.href = model.report;
}

async function loadModels() {
  try {
    models = (await call("/v1/models")).models;
  } catch (error) {
    say(error.message, true);
    return;
  }
  $("model").replaceChildren(...models.map((m) => new Option(m.name + " (" + m.family + ")", m.name)));
  $("model-field").hidden = models.length < 2;
  showReport();
  say("");
}

function render(texts, predictions) {
  const results = $("results");
  results.replaceChildren();
  predictions.forEach((prediction, i) => {
    const item = element("div", "result");
    item.append(element("div", "text", texts[i]), element("div", "label", prediction.label));
    for (const [name, p] of Object.entries(prediction.probabilities)) {
      const bar = element("div", "bar");
      const track = element("div", "track");
      const fill = element("div", "fill");
      fill.style.width = (100 * p).toFixed(1) + "%";
      track.append(fill);
      bar.append(element("span", "class", name), track, element("span", "p", p.toFixed(3)));
      item.append(bar);
    }
    results.append(item);
  });
}

async function predict() {
  const texts = $("texts").value.split("\\n").map((t) => t.trim()).filter((t) => t);
  if (!texts.length) return say("Type a text first, one per line.", true);
  const request = {texts: texts};
  if (models.length > 1) request.model = chosen().name;
  say("Predicting…");
  try {
    const answer = await call("/v1/predict", {method: "POST", body: JSON.stringify(request)});
    render(texts, answer.predictions);
    say(texts.length + (texts.length === 1 ? " text" : " texts") + " by " + answer.model);
  } catch (error) {
    say(error.message, true);
  }
}

// With a key, a plain link cannot send it: the report is fetched with it and written into a new window.
$("report").addEventListener("click", async (event) => {
  if (!$("key").value.trim()) return;
  event.preventDefault();
  const view = window.open("", "_blank");
  try {
    const response = await fetch($("report").href, {headers: headers()});
    if (!response.ok) throw new Error(problem(await response.json().catch(() => null), response.status));
    view.document.open();
    view.document.write(await response.text());
    view.document.close();
  } catch (error) {
    if (view) view.close();
    say(error.message, true);
  }
});
$("predict").addEventListener("click", predict);
$("texts").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) predict();
});
$("model").addEventListener("change", showReport);
$("key").addEventListener("change", loadModels);
loadModels();
</script>
</body>
</html>
"""
