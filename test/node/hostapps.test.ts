import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { logger } from '@libp2p/logger'
import { detectedGpus, detectHostApps, deviceTags, pickDevice } from '../../src/node/hostapps.ts'
import { getApp } from '../../src/runner/apps.ts'
import { detectApp } from '../../src/runner/detect.ts'
import { tempDir } from '../helpers.ts'

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
      const defs = [ffmpeg, getApp('sleep')]
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
      const rest = await detectHostApps(first.deferred, opts)
      assert.deepEqual(
        rest.apps.map((a) => a.name),
        ['ffmpeg'],
      )
      // next start: everything from the cache, nothing deferred; sleep's run kept ffmpeg's entry
      await detectHostApps([getApp('sleep')], opts)
      const again = await detectHostApps(defs, { ...opts, deferSelfTests: true })
      assert.deepEqual(again.apps.map((a) => a.name).sort(), ['ffmpeg', 'sleep'])
      assert.deepEqual(again.deferred, [])
    } finally {
      await dir.remove()
    }
  })
})
