// Every ```ts block of every README is compiled, as a module of its own, against the packages'
// public API as users get it (each package's built `dist/index.d.ts`, through its `exports`), so
// a snippet cannot drift from the code again. The test command builds (`tsc -b`) before it runs.
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Inside the repository, so that the root's node_modules resolves @portbind/* like a user's project.
const outDir = join(root, 'test', '.snippets');

interface Snippet {
  readme: string;
  /** 1-based line of the first code line in the README. */
  line: number;
  code: string;
  file: string;
}

async function readmes(): Promise<string[]> {
  const found = ['README.md'];
  for (const dir of ['packages', 'examples']) {
    for (const name of await readdir(join(root, dir))) found.push(join(dir, name, 'README.md'));
  }
  found.push('bench/README.md', 'bench/xmpp/README.md');
  for (const name of await readdir(join(root, 'docs')).catch(() => [] as string[])) {
    if (name.endsWith('.md')) found.push(join('docs', name));
  }
  const existing: string[] = [];
  for (const path of found) {
    if (
      await readFile(join(root, path)).then(
        () => true,
        () => false,
      )
    )
      existing.push(path);
  }
  return existing;
}

function extract(readme: string, text: string): Omit<Snippet, 'file'>[] {
  const lines = text.split('\n');
  const blocks: Omit<Snippet, 'file'>[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i] ?? '')) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !(lines[end] ?? '').startsWith('```')) end++;
    blocks.push({ readme, line: start + 1, code: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

const snippets: Snippet[] = [];
for (const readme of await readmes()) {
  const text = await readFile(join(root, readme), 'utf8');
  extract(readme, text).forEach((block, index) => {
    const slug = readme.replace(/[/.]/g, '_');
    snippets.push({ ...block, file: join(outDir, `${slug}_${index + 1}.ts`) });
  });
}

const diagnostics = new Map<Snippet, string[]>();

async function compileAll(): Promise<void> {
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  // `export {}` makes every block a module (top-level await, no globals shared between blocks).
  for (const snippet of snippets) await writeFile(snippet.file, `${snippet.code}\nexport {};\n`);
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
    noUnusedLocals: false,
  };
  // A package.json with "type": "module" next to the files: NodeNext treats them as ESM.
  await writeFile(join(outDir, 'package.json'), '{ "type": "module" }\n');
  const program = ts.createProgram(
    snippets.map((snippet) => snippet.file),
    options,
  );
  const byFile = new Map(snippets.map((snippet) => [snippet.file, snippet]));
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const file = diagnostic.file?.fileName;
    const snippet = file === undefined ? undefined : byFile.get(file);
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    if (snippet === undefined || diagnostic.file === undefined || diagnostic.start === undefined) {
      // Not inside a snippet (a global problem): report it on every snippet so it is seen.
      for (const each of snippets) diagnostics.set(each, [...(diagnostics.get(each) ?? []), message]);
      continue;
    }
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    const list = diagnostics.get(snippet) ?? [];
    list.push(`${snippet.readme}:${snippet.line + line}: TS${diagnostic.code} ${message}`);
    diagnostics.set(snippet, list);
  }
}

describe('README code blocks type-check against the public API', () => {
  afterAll(() => rm(outDir, { recursive: true, force: true }));

  it('finds the snippets of every README', async () => {
    // The root README and the packages' READMEs each show code: if extraction broke, this says so.
    const readmesWithCode = new Set(snippets.map((snippet) => snippet.readme));
    for (const readme of ['README.md', 'packages/core/README.md', 'packages/resp/README.md', 'packages/xmpp/README.md']) {
      expect(readmesWithCode, `${readme} has no \`\`\`ts block`).toContain(readme);
    }
    await compileAll();
  }, 120_000);

  for (const readme of new Set(snippets.map((snippet) => snippet.readme))) {
    it(relative('.', readme), () => {
      const errors = snippets.filter((snippet) => snippet.readme === readme).flatMap((snippet) => diagnostics.get(snippet) ?? []);
      expect(errors).toEqual([]);
    });
  }
});
