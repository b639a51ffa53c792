// Classify with transformers.js in Node, from an unzipped peft-onnx bundle folder, fully offline.
//
//   node classify.mjs < request.json > response.json
//   request:  {"folder": "/abs/bundle", "task": "text-classification" | "image-classification",
//              "dtype": "fp32" | "q8", "inputs": ["text", ...] or ["/abs/image.png", ...]}
//   with "tokenize": true, the ids the text-classification pipeline feeds the model instead (its tokenizer call:
//   padding and truncation on):  {"results": [[101, 2023, ..., 102], ...]}
//   response: {"results": [{"label": "spam", "score": 0.97, "scores": {"ham": 0.03, "spam": 0.97}}, ...],
//              "seconds": 1.2}      (top-1 label and score, and every label's score; seconds: load + scoring)
//
// Why stdin/stdout JSON: the Python test (tests/test_transformers_js.py) compares these labels and scores with
// the bundle's own predict.py, so one Node process scores every input (a process start costs ~0.5 s).
// Why one input per pipeline call: int8 (dynamic quantization) computes one activation scale per batch, so a
// text's score shifts slightly with the texts padded beside it; one at a time is what a demo page does and is
// what the test compares against (predict.py on one text).
import { AutoTokenizer, env, pipeline } from "@huggingface/transformers";
import path from "node:path";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));

// Nothing may come from the Hub: the bundle folder is the model, found as <localModelPath>/<model id>/.
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.localModelPath = path.dirname(path.resolve(req.folder)) + path.sep;
const modelId = path.basename(path.resolve(req.folder));

const started = performance.now();
const results = [];
if (req.tokenize) {
  const tokenizer = await AutoTokenizer.from_pretrained(modelId);
  for (const text of req.inputs) {
    results.push(Array.from(tokenizer(text, { padding: true, truncation: true }).input_ids.data, Number));
  }
} else {
  const classify = await pipeline(req.task ?? "text-classification", modelId, { dtype: req.dtype ?? "fp32" });
  for (const input of req.inputs) {
    const all = await classify(input, { top_k: null });  // every label, highest score first
    results.push({ label: all[0].label, score: all[0].score,
                   scores: Object.fromEntries(all.map((x) => [x.label, x.score])) });
  }
  await classify.dispose();
}
// no process.exit(): it could cut off stdout written to a pipe
process.stdout.write(JSON.stringify({ results, seconds: (performance.now() - started) / 1000 }));
