// Runs the test files named in AGW_SCALE_FILES (comma-separated, relative to the repository) in this one
// process, in order, against whatever REDIS_URL says: the matrix (matrix.ts) starts it once per Redis form,
// so the files share one process start and one topology instead of one of each per file.
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

for (const file of (process.env.AGW_SCALE_FILES ?? '').split(',').filter(Boolean)) {
  await import(pathToFileURL(resolve(file)).href)
}
