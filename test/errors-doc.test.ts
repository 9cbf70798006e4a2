// docs/errors.md lists every error code the packages (and the examples) can throw, each with its fix (Fastify's
// docs/Reference/Errors.md is the model): a code added in code without a docs entry, or an entry
// left behind by a removed code, fails here.
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

async function sourceFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith('.ts')) files.push(path);
  }
  return files;
}

describe('docs/errors.md', () => {
  it('documents exactly the PB_ERR_* codes the packages throw, each with a fix', async () => {
    const inCode = new Set<string>();
    // The packages' codes, and the examples' own (mini-redis's RDB and AOF load errors).
    for (const top of ['packages', 'examples']) {
      for (const pkg of await readdir(join(root, top))) {
        for (const file of await sourceFiles(join(root, top, pkg, 'src'))) {
          for (const match of (await readFile(file, 'utf8')).matchAll(/PB_ERR_[A-Z0-9_]+/g)) inCode.add(match[0]);
        }
      }
    }
    const doc = await readFile(join(root, 'docs', 'errors.md'), 'utf8');
    const sections = doc.split(/^### /m).slice(1);
    const documented = new Map(sections.map((section) => [section.split('\n')[0]?.trim() ?? '', section]));
    expect(inCode.size).toBeGreaterThan(5);
    expect([...documented.keys()].sort()).toEqual([...inCode].sort());
    for (const [code, section] of documented) {
      expect(section, `${code} says how to fix it`).toMatch(/\*\*Fix\*\*/);
    }
  });
});
