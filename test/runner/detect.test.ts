import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type AppDef, getApp } from '../../src/runner/apps.ts'
import { detectApp, findOnPath } from '../../src/runner/execute.ts'

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))

const fake = (detect: AppDef['detect']): AppDef => ({
  name: 'fake',
  description: 'a fake app',
  enabledByDefault: false,
  detect,
  settings: {},
  phases: [{ name: 'run', argv: ['version.sh'] }],
  usesFrames: false,
})

before(async () => {
  await chmod(join(fixtures, 'version.sh'), 0o755)
})

describe('detectApp', () => {
  it('finds echo and sleep on PATH without a version', async () => {
    for (const name of ['echo', 'sleep']) {
      const r = await detectApp(getApp(name))
      assert.equal(r.available, true, name)
      assert.match(r.path ?? '', new RegExp(`/${name}$`))
      assert.equal(r.version, null)
    }
  })

  it('treats the command app as always available', async () => {
    assert.deepEqual(await detectApp(getApp('command')), {
      available: true,
      version: null,
      path: null,
      reason: null,
    })
  })

  it('reads the version with a pattern from a PATH it is given', async () => {
    const app = fake({
      command: 'version.sh',
      versionArgs: ['--version'],
      versionPattern: 'FakeApp (\\d+\\.\\d+\\.\\d+)',
    })
    const r = await detectApp(app, { env: { PATH: `/nonexistent:${fixtures}` } })
    assert.deepEqual(r, {
      available: true,
      version: '4.2.1',
      path: join(fixtures, 'version.sh'),
      reason: null,
    })
  })

  it('takes the first line as the version without a pattern', async () => {
    const app = fake({ command: join(fixtures, 'version.sh'), versionArgs: ['--version'] })
    assert.equal((await detectApp(app)).version, 'FakeApp 4.2.1 (build abc)')
  })

  it('reports a missing command and a failing version check', async () => {
    const missing = await detectApp(fake({ command: 'openfarm-no-such-app' }))
    assert.deepEqual(missing, {
      available: false,
      version: null,
      path: null,
      reason: 'command not found: openfarm-no-such-app',
    })
    const failing = await detectApp(fake({ command: join(fixtures, 'version.sh'), versionArgs: ['--bogus'] }))
    assert.equal(failing.available, false)
    assert.equal(failing.reason, 'version check failed: exit code 2: bad usage')
  })

  it('ignores relative PATH entries and non-executable files', async () => {
    assert.equal(await findOnPath('version.sh', `.:test/runner/fixtures`), null)
    const dir = await mkdtemp(join(tmpdir(), 'openfarm-detect-'))
    await writeFile(join(dir, 'plain'), '#!/bin/sh\n', { mode: 0o644 })
    assert.equal(await findOnPath('plain', dir), null)
    await rm(dir, { recursive: true })
    assert.equal(await findOnPath('', fixtures), null)
  })
})
