// Reference ids for the GPT-2 tokenizer test: the npm package gpt-3-encoder@1.1.4's own encode()
// (OpenAI's GPT-2 encoder ported to JavaScript) applied to every line of a text file, and to the
// whole file at once (newlines and whitespace runs across lines included).
//
// Regenerate tests/fixtures/gpt2_tokenizer/expected.json (from the repository root):
//   (cd /tmp && npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz) &&
//   node tests/reference/gpt2_tokenizer_reference.js /tmp/package \
//     tests/fixtures/gpt2_tokenizer/input.txt tests/fixtures/gpt2_tokenizer/expected.json
//
// input.txt is committed as is: fortunes (a few lines of every file in /usr/share/games/fortunes/
// and all of its non-ASCII lines), C++ and Python from this repository, and hand-written lines of
// Unicode (CJK, emoji, combining marks, RTL, accented Latin), whitespace runs, tabs, trailing
// spaces, contractions and numbers. Lines are split on '\n' only, so a '\r' stays in its line.
'use strict';
const fs = require('fs');
const path = require('path');

const [pkgDir, inputPath, outputPath] = process.argv.slice(2);
if (!pkgDir || !inputPath || !outputPath) {
  console.error('usage: node gpt2_tokenizer_reference.js <unpacked gpt-3-encoder dir> <input.txt> <output.json>');
  process.exit(2);
}
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf-8'));
if (pkg.name !== 'gpt-3-encoder' || pkg.version !== '1.1.4') {
  console.error(`expected gpt-3-encoder@1.1.4 in ${pkgDir}, found ${pkg.name}@${pkg.version}`);
  process.exit(1);
}
const {encode, decode} = require(path.resolve(pkgDir, 'Encoder.js'));

const bytes = fs.readFileSync(inputPath);
const text = bytes.toString('utf-8');
if (!Buffer.from(text, 'utf-8').equals(bytes)) {
  console.error(`${inputPath} is not valid UTF-8: the reference only sees JavaScript strings`);
  process.exit(1);
}
const lines = text.split('\n');
if (lines[lines.length - 1] === '') lines.pop();  // the file's final newline ends the last line

// The package's decode() goes through TextDecoder, which drops a leading U+FEFF (a BOM to it).
const check = (s, ids) => {
  const back = decode(ids);
  if (back !== s && !(s.startsWith('\ufeff') && back === s.slice(1)))
    throw new Error(`the reference does not round-trip ${JSON.stringify(s)}`);
  return ids;
};
const lineIds = lines.map((l) => check(l, encode(l)));
const wholeIds = check(text, encode(text));

// One line of JSON per input line keeps diffs readable.
const out = ['{', '"source": "gpt-3-encoder@1.1.4",', `"input_bytes": ${bytes.length},`,
             `"line_count": ${lines.length},`, '"lines": ['];
lineIds.forEach((ids, i) => out.push(JSON.stringify(ids) + (i + 1 < lineIds.length ? ',' : '')));
out.push('],', `"whole": ${JSON.stringify(wholeIds)}`, '}');
fs.writeFileSync(outputPath, out.join('\n') + '\n');
console.error(`${lines.length} lines, ${lineIds.reduce((n, ids) => n + ids.length, 0)} + ${wholeIds.length} ids -> ${outputPath}`);
