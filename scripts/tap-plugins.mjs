// Builds tap's Test class with the plugins .taprc lists, from the packages npm installed.
//
// Why: tap 21 ships @tapjs/test built with its default plugins. When .taprc asks for another set
// (here @tapjs/tsx instead of @tapjs/typescript), `tap` notices the signature differs and runs
// `tap build`, which goes through `tap plugin add`: it asks the registry for the newest matching
// @tapjs/tsx, installs it into .tap/plugins, and rewrites .taprc. It also rebuilds only after the
// runner has picked its loaders, so that first run still loads TypeScript through ts-node. Building
// here, before tap starts (postinstall and pretest), makes the signatures match: tap never rebuilds,
// never downloads, never writes .taprc, and every run uses the tsx loader from node_modules.
//
// Runs in a second or less when the build is current. Does nothing where tap is not installed
// (npm ci --omit=dev in the image).
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
process.chdir(root)

let generator
try {
  generator = fileURLToPath(import.meta.resolve('@tapjs/test/generate-tap-test-class'))
} catch {
  process.exit(0) // production install: no tap here
}

const { TapConfig } = await import('@tapjs/config')
// TapConfig parses process.argv; give it none of ours.
process.argv = process.argv.slice(0, 2)
const config = await TapConfig.load()
const wanted = config.pluginSignature

// The signature the built class carries (what `tap` compares with .taprc's plugin list).
const builtFile = resolve(dirname(generator), '../../test-built/dist/esm/index.js')
const built = () => {
  try {
    return readFileSync(builtFile, 'utf8').match(/^export const signature = `([^`]*)`/m)?.[1].trim() ?? ''
  } catch {
    return ''
  }
}

if (built() === wanted) process.exit(0)

// Packages a previous `tap plugin add` downloaded would shadow the installed ones: drop them.
const downloaded = resolve(root, '.tap/plugins/node_modules')
if (existsSync(downloaded)) rmSync(downloaded, { recursive: true, force: true })

const r = spawnSync(process.execPath, [generator, ...config.pluginList], { cwd: root, stdio: 'inherit' })
if (r.status !== 0) {
  console.error('tap-plugins: building the tap Test class failed')
  process.exit(1)
}
if (built() !== wanted) {
  console.error(`tap-plugins: built signature does not match .taprc:\n${built()}\n---\n${wanted}`)
  process.exit(1)
}
console.error(`tap-plugins: built tap with ${config.pluginList.length} plugins (${config.pluginList.filter((p) => !p.startsWith('@tapjs/') || p === '@tapjs/tsx').join(', ')})`)
