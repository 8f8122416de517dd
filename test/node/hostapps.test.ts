import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import { logger } from '@libp2p/logger'
import { FarmKey } from '../../src/node/farmkey.ts'
import { binaryKey, detectedGpus, detectHostApps, deviceTags, pickDevice } from '../../src/node/hostapps.ts'
import { SELF_TEST_RUNNING, serve } from '../../src/node/serve.ts'
import { getApp } from '../../src/runner/apps.ts'
import { findPyCache, pyCacheRoot } from '../../src/runner/blender/pycache.ts'
import { detectApp } from '../../src/runner/detect.ts'
import { blenderMissing } from '../fixtures/blender/make-scene.ts'
import { tempDir, waitFor } from '../helpers.ts'

const run = promisify(execFile)

describe("a host's Cycles devices", () => {
  const cpuOnly = [{ type: 'CPU' as const, secondsPerFrame: 2 }]
  const withGpu = [
    ...cpuOnly,
    { type: 'CUDA' as const, secondsPerFrame: 0.5 },
    { type: 'OPTIX' as const, secondsPerFrame: 0.4 },
  ]

  it('are announced as tags, and a GPU that passed its self-test as one GPU', () => {
    assert.deepEqual(deviceTags(cpuOnly), ['device:cpu'])
    assert.deepEqual(deviceTags(withGpu), ['device:cpu', 'device:gpu'])
    assert.deepEqual(detectedGpus(cpuOnly), [])
    assert.deepEqual(detectedGpus(withGpu), [{ name: 'Cycles CUDA/OPTIX', memoryMb: 0 }])
  })

  it('render on the fastest GPU backend unless the job asks for the CPU', () => {
    assert.equal(pickDevice(withGpu, 'any'), 'OPTIX')
    assert.equal(pickDevice(withGpu, 'cpu'), 'CPU')
    assert.equal(pickDevice(cpuOnly, 'any'), 'CPU')
  })
})

describe('self-tests on a first start', () => {
  it('are deferred until after the start, then cached for the next one', async (t) => {
    const ffmpeg = getApp('ffmpeg')
    const found = await detectApp(ffmpeg)
    if (!found.available) {
      t.skip(`*** SKIPPED: ffmpeg not found (${found.reason}); .ci/run installs it ***`)
      return
    }
    const dir = await tempDir('hostapps')
    try {
      const opts = {
        workDir: join(dir.path, 'work'),
        cacheFile: join(dir.path, 'selftest.json'),
        log: logger('t'),
      }
      // ffmpeg through a wrapper that counts its version checks
      const calls = join(dir.path, 'calls')
      const wrapper = join(dir.path, 'ffmpeg')
      await writeFile(wrapper, `#!/bin/sh\necho "$1" >> '${calls}'\nexec '${found.path}' "$@"\n`, {
        mode: 0o755,
      })
      const counted = { ...ffmpeg, detect: { ...ffmpeg.detect!, command: wrapper } }
      const versionChecks = async () =>
        (await readFile(calls, 'utf8').catch(() => '')).split('\n').filter((l) => l === '-version').length
      const defs = [counted, getApp('sleep')]
      // first start: sleep needs no self-test and is offered; ffmpeg's self-test waits
      const first = await detectHostApps(defs, { ...opts, deferSelfTests: true })
      assert.deepEqual(
        first.apps.map((a) => a.name),
        ['sleep'],
      )
      assert.deepEqual(
        first.deferred.map((d) => d.name),
        ['ffmpeg'],
      )
      // then it runs (serve.ts does this once the node is up) and is remembered
      const rest = await detectHostApps(first.deferred, { ...opts, known: first.detected })
      assert.deepEqual(
        rest.apps.map((a) => a.name),
        ['ffmpeg'],
      )
      assert.equal(await versionChecks(), 1, 'the deferred self-test did not ask for the version again')
      // next start: everything from the cache, nothing deferred; sleep's run kept ffmpeg's entry
      await detectHostApps([getApp('sleep')], opts)
      const again = await detectHostApps(defs, { ...opts, deferSelfTests: true })
      assert.equal(await versionChecks(), 2, 'a restart checks the version once')
      assert.deepEqual(again.apps.map((a) => a.name).sort(), ['ffmpeg', 'sleep'])
      assert.deepEqual(again.deferred, [])
    } finally {
      await dir.remove()
    }
  })
})

describe("what a host's Blender build can do", () => {
  it('is announced as a tag once its self-test saw it, and an older cached result is tested again', async () => {
    const dir = await tempDir('features')
    try {
      // a Blender built with OpenImageDenoise: it renders the test frame and says so; each run counted
      const runs = join(dir.path, 'runs')
      const fake = join(dir.path, 'blender')
      const body = [
        'if [ "$1" = --version ]; then echo "Blender 4.2.0"; exit 0; fi',
        `echo run >> '${runs}'`,
        'while [ "$1" != -o ]; do shift; done',
        'f=$(echo "$2" | sed s/####/0001/).png',
        'mkdir -p "$(dirname "$f")" && echo png > "$f"',
        'echo \'OPENFARM-FEATURES {"oidn": true}\'',
        'echo "Saved: \'$f\'"',
      ]
      await writeFile(fake, `#!/bin/sh\n${body.join('\n')}\n`, { mode: 0o755 })
      const blender = getApp('blender')
      const def = { ...blender, detect: { ...blender.detect!, command: fake } }
      const opts = {
        workDir: join(dir.path, 'work'),
        cacheFile: join(dir.path, 'selftest.json'),
        log: logger('t'),
      }
      const testRuns = async () => (await readFile(runs, 'utf8').catch(() => '')).split('\n').length - 1
      // a result cached by an older self-test, which did not look for features
      const old = await binaryKey(fake, '4.2.0')
      await writeFile(
        opts.cacheFile,
        JSON.stringify({ blender: { key: old, result: { ok: true, devices: [] } } }),
      )
      const found = await detectHostApps([def], opts)
      assert.equal(await testRuns(), 1, 'the older cached result was tested again')
      assert.deepEqual(found.features, ['blender:oidn'])
      // then the new result is the one remembered
      const again = await detectHostApps([def], opts)
      assert.equal(await testRuns(), 1)
      assert.deepEqual(again.features, ['blender:oidn'])
    } finally {
      await dir.remove()
    }
  })
})

describe('a first start', () => {
  const node = (dir: string) =>
    serve({
      dataDir: dir,
      key: FarmKey.generate(),
      configFile: null,
      flags: { name: 'fresh', speed: '1', disableApps: ['ffmpeg'] },
      listen: ['/ip4/127.0.0.1/tcp/0'],
      mdns: false,
    })
  const selfTestsRunning = async () =>
    (await run('pgrep', ['-f', 'selftest-blender-']).catch(() => ({ stdout: '' }))).stdout.trim() !== ''

  it('is up before Blender is self-tested, offers it once it passed, and stops a self-test it is leaving', async (t) => {
    const missing = await blenderMissing()
    if (missing !== null) {
      t.skip(`*** SKIPPED: ${missing}; .ci/run installs blender ***`)
      return
    }
    const dir = await tempDir('firststart')
    try {
      const first = await node(join(dir.path, 'a'))
      try {
        assert.deepEqual(
          first.unavailable.filter((u) => u.reason === SELF_TEST_RUNNING).map((u) => u.name),
          ['blender'],
        )
        assert.ok(!first.apps.some((a) => a.name === 'blender'))
        await first.appsReady
        assert.ok(
          first.apps.some((a) => a.name === 'blender'),
          JSON.stringify(first.unavailable),
        )
        // and its tasks start Blender with the bytecode cache built for this binary
        const pycache = first.pycache('blender')
        assert.ok(pycache !== undefined)
        assert.equal(await findPyCache(join(pyCacheRoot(join(dir.path, 'a')), 'blender')), pycache)
        // what it announces (the self row of `openfarm hosts`) says so too
        const self = first.node.hosts().find((h) => h.self)!
        assert.ok(self.apps.some((a) => a.name === 'blender'))
        assert.ok(!self.appsUnavailable?.some((u) => u.reason === SELF_TEST_RUNNING))
      } finally {
        await first.stop()
      }
      // another fresh node, stopped while its self-test renders: the Blender goes with it
      const second = await node(join(dir.path, 'b'))
      await waitFor('the self-test Blender running', selfTestsRunning)
      await second.stop()
      assert.equal(await selfTestsRunning(), false, 'no self-test Blender left behind')
      assert.ok(!second.apps.some((a) => a.name === 'blender'), 'nothing offered after the stop')
    } finally {
      await dir.remove()
    }
  })
})
