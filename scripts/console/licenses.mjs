// The license of every package esbuild put into the bundle (its metafile lists the
// inputs), in one text file beside the bundle: usage: node licenses.mjs meta.json out.js
import {readFileSync} from 'node:fs';

const [metaFile, output] = process.argv.slice(2);
const meta = JSON.parse(readFileSync(metaFile, 'utf8'));
const names = new Set();
for (const input of Object.keys(meta.outputs[output].inputs)) {
  const found = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (found) names.add(found[1]);
}
const parts = [...names].sort().map((name) => {
  const dir = 'node_modules/' + name + '/';
  const pkg = JSON.parse(readFileSync(dir + 'package.json', 'utf8'));
  const text = readFileSync(dir + 'LICENSE', 'utf8').trim();
  return '== ' + name + ' ' + pkg.version + ' (' + pkg.license + ') ==\n\n' + text + '\n';
});
process.stdout.write(parts.join('\n'));
