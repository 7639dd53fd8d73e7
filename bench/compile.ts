// Children run as plain JavaScript: src/ and bench/ are transpiled once per run (TypeScript's
// transpileModule, no type check) instead of loading through tsx, whose loader thread and esbuild
// service add ~30 MB of RSS and some CPU to every process we measure. The output goes under
// node_modules/.cache so that bare imports (fastify, ioredis…) resolve from the repo's node_modules.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import ts from 'typescript'

const SOURCE_DIRS = ['src', 'bench']

function tsFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return e.name === 'results' ? [] : tsFiles(path)
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : []
  })
}

/** Transpiles src/ and bench/ under `root` into `outDir`; returns `outDir`. */
export function compileForRun (root: string, outDir: string): string {
  rmSync(outDir, { recursive: true, force: true })
  for (const dir of SOURCE_DIRS) {
    for (const file of tsFiles(join(root, dir))) {
      const out = ts.transpileModule(readFileSync(file, 'utf8'), {
        fileName: file,
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true, sourceMap: false }
      })
      const target = join(outDir, relative(root, file)).replace(/\.ts$/, '.js')
      mkdirSync(dirname(target), { recursive: true })
      writeFileSync(target, out.outputText)
    }
  }
  // Inside node_modules no package.json of ours applies: say that these files are ES modules.
  writeFileSync(join(outDir, 'package.json'), '{ "type": "module" }\n')
  return outDir
}
