import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { detectedGpus, deviceTags, pickDevice } from '../../src/node/hostapps.ts'

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
