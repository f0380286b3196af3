"""The visual search page `cnnpipe serve` offers at `/`: pick or drop an image, or click one of the example queries
the version carries, see its class and the catalog items most like it; click a neighbour to search with it next. It
calls the same REST API as any client: the model's metadata (its version, what answers `search`), then
`predict_image` and `search` on that version, and shows each neighbour's thumbnail from
`/v1/models/NAME/versions/V/items/ID` (the examples from `.../examples`).
"""

import html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cnnpipe: more like this</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
 #drop { border: 2px dashed #999; border-radius: 8px; padding: 1.5em; text-align: center; }
 #drop.over { background: #eef; }
 #query { max-height: 112px; image-rendering: pixelated; margin: 1em 0; }
 #neighbours { display: flex; flex-wrap: wrap; gap: 1em; list-style: none; padding: 0; }
 #neighbours li { text-align: center; width: 7em; }
 #neighbours img { width: 84px; height: 84px; object-fit: contain; image-rendering: pixelated; border: 1px solid #ccc; }
 #examples { display: flex; flex-wrap: wrap; gap: 0.4em; margin: 0.5em 0 1em; }
 #examples img, #neighbours img { cursor: pointer; }
 #examples img { width: 48px; height: 48px; object-fit: contain; image-rendering: pixelated; border: 1px solid #ccc; }
 .error { color: #b00; }
</style></head>
<body>
<h1>More like this</h1>
<p><label>Model <select id="model">%(options)s</select></label></p>
<div id="drop">Drop an image here, or <input type="file" id="file" accept="image/png,image/jpeg"></div>
<p id="examples-label" hidden>Or try one of these:</p>
<div id="examples"></div>
<img id="query" alt="" hidden>
<p id="prediction"></p>
<ol id="neighbours"></ol>
<p id="status"></p>
<script>
const $ = (id) => document.getElementById(id);

async function call(base, signature, b64) {
  const response = await fetch(base + ":predict", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({signature_name: signature, instances: [{b64: b64}]})});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error);
  return body.predictions[0];
}

async function version(model) {
  const metadata = await (await fetch(`/v1/models/${model}/metadata`)).json();
  if (metadata.error) throw new Error(metadata.error);
  return metadata;
}

function decimals(scores) {  // the fewest (3 to 7) at which different scores print differently
  for (let digits = 3; digits < 7; digits++) {
    if (new Set(scores.map((s) => s.toFixed(digits))).size === new Set(scores).size) return digits;
  }
  return 7;
}

async function searchFor(url) {  // an example or a neighbour, searched with next
  search(await (await fetch(url)).blob());
}

async function showExamples() {
  $("examples").replaceChildren(); $("examples-label").hidden = true;
  try {
    const model = $("model").value, metadata = await version(model);
    const base = `/v1/models/${model}/versions/${metadata.model_spec.version}`;
    const response = await fetch(`${base}/examples`);
    if (!response.ok) return;
    for (const example of (await response.json()).examples) {
      const image = document.createElement("img");
      image.src = `${base}/examples/${example.id}`; image.alt = image.title = example.class_name || example.source;
      image.dataset.id = example.id; image.className = "example";
      image.addEventListener("click", () => searchFor(image.src));
      $("examples").append(image);
    }
    $("examples-label").hidden = false;
  } catch (error) {
    $("status").className = "error"; $("status").textContent = error.message;
  }
}

async function search(file) {
  $("status").className = ""; $("status").textContent = "Searching\\u2026";
  $("prediction").textContent = ""; $("neighbours").replaceChildren();
  try {
    const dataUrl = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result); reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
    $("query").src = dataUrl; $("query").hidden = false;
    const b64 = dataUrl.split(",")[1], model = $("model").value;
    const metadata = await version(model);
    const number = metadata.model_spec.version, base = `/v1/models/${model}/versions/${number}`;
    const [predicted, found] = await Promise.all([call(base, "predict_image", b64), call(base, "search", b64)]);
    const best = predicted.probabilities.indexOf(Math.max(...predicted.probabilities));
    $("prediction").textContent = `${predicted.all_class_names[best]}: ` +
      `${(100 * predicted.probabilities[best]).toFixed(1)}%% probability`;
    const digits = decimals(found.scores);
    found.neighbor_ids.forEach((id, rank) => {
      const item = document.createElement("li"), image = document.createElement("img");
      const caption = document.createElement("div");
      item.dataset.id = id; item.className = "neighbour";
      image.src = `${base}/items/${id}`; image.alt = found.neighbor_sources[rank];
      image.title = found.neighbor_sources[rank];
      image.addEventListener("click", () => searchFor(image.src));
      caption.textContent = `${found.neighbor_class_names[rank] || "\\u2014"} ${found.scores[rank].toFixed(digits)}`;
      item.append(image, caption); $("neighbours").append(item);
    });
    $("status").textContent = `${model} version ${number}; search answered by ` +
      `${metadata.metadata.search_index || "exact search"}.`;
  } catch (error) {
    $("status").className = "error"; $("status").textContent = error.message;
  }
}

$("file").addEventListener("change", () => $("file").files[0] && search($("file").files[0]));
$("model").addEventListener("change", showExamples);
showExamples();
$("drop").addEventListener("dragover", (event) => { event.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (event) => {
  event.preventDefault(); $("drop").classList.remove("over");
  if (event.dataTransfer.files[0]) search(event.dataTransfer.files[0]);
});
</script>
</body></html>
"""


def page(models: list[str]) -> bytes:
    """The page, offering `models` (the first preselected)."""
    options = "".join(f'<option>{html.escape(name)}</option>' for name in models)
    return (PAGE % {"options": options}).encode()


def image_type(data: bytes) -> str:
    """The Content-Type of an encoded thumbnail (PNG or JPEG, as ingestion stores images)."""
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
