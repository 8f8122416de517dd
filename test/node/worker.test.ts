// The worker's work directories: removed after a task succeeds, kept (and named in the task's log)
// when it fails, so its owner can look inside.

import assert from 'node:assert/strict'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { logger } from '@libp2p/logger'
import { worker } from '../../src/node/worker.ts'
import { getApp } from '../../src/runner/apps.ts'
import { compileJob } from '../../src/runner/compile.ts'
import { tempDir } from '../helpers.ts'

const apps = [getApp('sleep'), getApp('command')]
const ctx = { peer: 'peerA', now: 1, apps }

describe("the worker's work directories", () => {
  it('are removed after success and kept, with their path in the log, after a failure', async () => {
    const dir = await tempDir('worker')
    try {
      const lines: string[] = []
      const run = worker({
        workDir: dir.path,
        apps,
        log: logger('openfarm:test'),
        onLine: (_job, _task, _stream, text) => lines.push(text),
      })
      const signal = new AbortController().signal
      const ok = compileJob({ app: 'sleep', frames: '1', settings: { seconds: 0 } }, { ...ctx, id: 'jok' })
      assert.deepEqual(await run(ok, 0, 0, signal, () => undefined), { ok: true, reason: null })
      assert.deepEqual(await readdir(join(dir.path, 'jok')), [], 'nothing left of the task')

      const bad = compileJob({ app: 'command', settings: { argv: '["false"]' } }, { ...ctx, id: 'jbad' })
      const r = await run(bad, 0, 0, signal, () => undefined)
      assert.equal(r.ok, false)
      assert.match(r.reason ?? '', /exit|code 1/)
      const kept = join(dir.path, 'jbad', '0-0')
      assert.ok((await stat(kept)).isDirectory(), 'the failed task keeps its directory')
      assert.ok(lines.some((l) => l.includes(`work dir kept on ${kept}`)))
    } finally {
      await dir.remove()
    }
  })
})
