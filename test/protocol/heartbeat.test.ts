// Heartbeat v2 codec: round trip, every field's bounds (a malformed field rejects the whole heartbeat,
// naming the field), the 16 KiB limit, other versions, and garbage that must only ever be rejected.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { defaultLogger } from '@libp2p/logger'
import fc from 'fast-check'
import {
  decodeHeartbeat,
  encodeHeartbeat,
  HEARTBEAT_VERSION,
  type Heartbeat,
  InvalidHeartbeatError,
  MAX_HEARTBEAT_BYTES,
  MAX_TASK_MS,
  UnsupportedHeartbeatVersionError,
} from '../../src/protocol/heartbeat/codec.ts'
import { heartbeat } from '../../src/protocol/heartbeat/index.ts'

const hb: Heartbeat = {
  v: HEARTBEAT_VERSION,
  name: 'studio-pc',
  seq: 42,
  slots: 2,
  free: 1,
  running: [{ job: 'j1abc', task: 3, attempt: 0, startedMsAgo: 12_500, expectedMs: 60_000 }],
  cores: 16,
  memoryMb: 32_768,
  gpus: [{ name: 'NVIDIA GeForce RTX 3060', memoryMb: 12_288 }],
  apps: [
    { name: 'blender', version: '4.2.1' },
    { name: 'command', version: null },
  ],
  tags: ['linux', 'room:studio'],
  speed: 1.37,
  speedSource: 'benchmark',
  wattsIdle: 45,
  wattsLoaded: 180,
  price: 0.28,
  currency: 'EUR',
  availability: { windows: [{ days: [1, 2, 3, 4, 5], from: '19:00', to: '08:00' }], available: true },
  appsUnavailable: [{ name: 'ffmpeg', reason: 'command not found: ffmpeg' }],
}

/** Bytes of any object, unchecked (encodeHeartbeat refuses to send a malformed heartbeat). */
const raw = (x: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(x))
const withRunning = (r: object) => ({ ...hb, running: [{ ...hb.running[0], ...r }] })
const withWindow = (w: object) => ({
  ...hb,
  availability: { windows: [{ ...hb.availability!.windows[0], ...w }], available: false },
})
const many = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i))

function rejects(field: string, x: unknown): void {
  assert.throws(
    () => decodeHeartbeat(raw(x)),
    (err: Error) => {
      assert.ok(err instanceof InvalidHeartbeatError)
      assert.equal(err.name, 'InvalidHeartbeatError')
      assert.ok(err.message.startsWith(`heartbeat field ${field} `), err.message)
      return true
    },
    `${field}: ${JSON.stringify(x).slice(0, 200)}`,
  )
}

const accepts = (x: unknown): Heartbeat => decodeHeartbeat(raw(x))

describe('heartbeat codec v2', () => {
  it('round-trips a full heartbeat, and one with every nullable field null and every list empty', () => {
    assert.deepEqual(decodeHeartbeat(encodeHeartbeat(hb)), hb)
    const bare: Heartbeat = {
      ...hb,
      running: [{ job: 'j', task: 0, attempt: 0, startedMsAgo: 0, expectedMs: null }],
      gpus: [],
      apps: [],
      tags: [],
      price: null,
      currency: null,
      availability: null,
      appsUnavailable: [],
      speedSource: 'config',
    }
    assert.deepEqual(decodeHeartbeat(encodeHeartbeat(bare)), bare)
  })

  it('ignores unknown extra keys (later additions within version 2) and drops them', () => {
    const out = accepts({ ...hb, future: 1, running: [{ ...hb.running[0], extra: true }] })
    assert.deepEqual(out, hb)
  })

  it('a realistic heartbeat is far below the limit', () => {
    assert.ok(encodeHeartbeat(hb).byteLength < 1024, `${encodeHeartbeat(hb).byteLength} bytes`)
  })

  it('accepts the edges of every bound', () => {
    accepts({ ...hb, name: 'x'.repeat(100), seq: Number.MAX_SAFE_INTEGER, slots: 0, free: 0, running: [] })
    accepts({ ...hb, slots: 1024, free: 1024, cores: 0, memoryMb: 2 ** 30 })
    accepts(withRunning({ startedMsAgo: MAX_TASK_MS, expectedMs: MAX_TASK_MS, task: 1e6, attempt: 1e4 }))
    accepts({ ...hb, speed: 0.01, wattsIdle: 0.5, wattsLoaded: 0.5, price: 0 })
    accepts({ ...hb, speed: 1000, wattsIdle: 100_000, wattsLoaded: 100_000, price: 1e6 })
    accepts({ ...hb, tags: many(32, (i) => `t${i}`.padEnd(32, 'x')) })
    accepts({ ...hb, apps: many(64, (i) => ({ name: `a${i}`, version: null })) })
    accepts({ ...hb, gpus: many(16, () => ({ name: 'g', memoryMb: 0 })) })
    for (const [from, to] of [
      ['00:00', '24:00'],
      ['23:59', '00:00'],
      ['08:00', '07:59'],
    ]) {
      accepts(withWindow({ from, to, days: [0, 6] }))
    }
  })

  const cases: [string, unknown][] = [
    ['name', { ...hb, name: '' }],
    ['name', { ...hb, name: 'x'.repeat(101) }],
    ['name', { ...hb, name: 7 }],
    ['seq', { ...hb, seq: -1 }],
    ['seq', { ...hb, seq: 1.5 }],
    ['seq', { ...hb, seq: '1' }],
    ['slots', { ...hb, slots: 1025 }],
    ['slots', { ...hb, slots: -1 }],
    ['free', { ...hb, free: 3 }],
    ['free', { ...hb, free: -1 }],
    ['running', { ...hb, running: null }],
    ['running[0]', { ...hb, running: ['j1/3'] }],
    ['running[0].job', withRunning({ job: '' })],
    ['running[0].job', withRunning({ job: 'j'.repeat(65) })],
    ['running[0].task', withRunning({ task: -1 })],
    ['running[0].task', withRunning({ task: 1e6 + 1 })],
    ['running[0].attempt', withRunning({ attempt: 10_001 })],
    ['running[0].startedMsAgo', withRunning({ startedMsAgo: -1 })],
    ['running[0].startedMsAgo', withRunning({ startedMsAgo: 0.5 })],
    ['running[0].startedMsAgo', withRunning({ startedMsAgo: MAX_TASK_MS + 1 })],
    ['running[0].startedMsAgo', withRunning({ startedMsAgo: undefined })],
    ['running[0].expectedMs', withRunning({ expectedMs: -5 })],
    ['running[0].expectedMs', withRunning({ expectedMs: '60000' })],
    ['running[0].expectedMs', withRunning({ expectedMs: undefined })],
    ['cores', { ...hb, cores: 4097 }],
    ['memoryMb', { ...hb, memoryMb: -1 }],
    ['gpus', { ...hb, gpus: {} }],
    ['gpus', { ...hb, gpus: many(17, () => hb.gpus[0]) }],
    ['gpus[0]', { ...hb, gpus: [null] }],
    ['gpus[0].name', { ...hb, gpus: [{ name: '', memoryMb: 1 }] }],
    ['gpus[0].memoryMb', { ...hb, gpus: [{ name: 'g', memoryMb: -1 }] }],
    ['apps', { ...hb, apps: many(65, (i) => ({ name: `a${i}`, version: null })) }],
    ['apps', { ...hb, apps: [hb.apps[0], hb.apps[0]] }],
    ['apps[0].name', { ...hb, apps: [{ name: '', version: null }] }],
    ['apps[0].version', { ...hb, apps: [{ name: 'a', version: '' }] }],
    ['apps[0].version', { ...hb, apps: [{ name: 'a', version: 'v'.repeat(65) }] }],
    ['tags', { ...hb, tags: 'linux' }],
    ['tags', { ...hb, tags: many(33, (i) => `t${i}`) }],
    ['tags', { ...hb, tags: ['a', 'a'] }],
    ['tags[0]', { ...hb, tags: ['has space'] }],
    ['tags[0]', { ...hb, tags: ['a,b'] }],
    ['tags[0]', { ...hb, tags: [''] }],
    ['tags[0]', { ...hb, tags: ['t'.repeat(33)] }],
    ['tags[1]', { ...hb, tags: ['ok', 5] }],
    ['speed', { ...hb, speed: 0 }],
    ['speed', { ...hb, speed: 0.0099 }],
    ['speed', { ...hb, speed: 1000.5 }],
    ['speed', { ...hb, speed: Number.NaN }],
    ['speed', { ...hb, speed: '1' }],
    ['speedSource', { ...hb, speedSource: 'guess' }],
    ['speedSource', { ...hb, speedSource: null }],
    ['wattsIdle', { ...hb, wattsIdle: 0 }],
    ['wattsIdle', { ...hb, wattsIdle: Number.POSITIVE_INFINITY }],
    ['wattsLoaded', { ...hb, wattsLoaded: 100_001 }],
    ['wattsLoaded', { ...hb, wattsIdle: 100, wattsLoaded: 99 }],
    ['price', { ...hb, price: -0.01 }],
    ['price', { ...hb, price: 1e6 + 1 }],
    ['price', { ...hb, price: '0.28' }],
    ['price', { ...hb, price: undefined }],
    ['currency', { ...hb, currency: 'eur' }],
    ['currency', { ...hb, currency: 'EURO' }],
    ['currency', { ...hb, currency: '' }],
    ['availability', { ...hb, availability: 'always' }],
    ['availability.windows', { ...hb, availability: { windows: null, available: true } }],
    ['availability.windows', { ...hb, availability: { windows: many(33, () => ({})), available: true } }],
    ['availability.available', { ...hb, availability: { windows: [], available: 'yes' } }],
    ['availability.windows[0].days', withWindow({ days: [] })],
    ['availability.windows[0].days', withWindow({ days: [1, 1] })],
    ['availability.windows[0].days', withWindow({ days: 'mon' })],
    ['availability.windows[0].days', withWindow({ days: many(8, (i) => i % 7) })],
    ['availability.windows[0].days[0]', withWindow({ days: [7] })],
    ['availability.windows[0].days[0]', withWindow({ days: [-1] })],
    ['availability.windows[0].from', withWindow({ from: '24:00' })],
    ['availability.windows[0].from', withWindow({ from: '7:00' })],
    ['availability.windows[0].from', withWindow({ from: '12:60' })],
    ['availability.windows[0].to', withWindow({ to: '24:01' })],
    ['availability.windows[0].to', withWindow({ to: '25:00' })],
    ['availability.windows[0].to', withWindow({ from: '08:00', to: '08:00' })],
    ['appsUnavailable', { ...hb, appsUnavailable: undefined }],
    ['appsUnavailable', { ...hb, appsUnavailable: many(65, (i) => ({ name: `a${i}`, reason: 'x' })) }],
    ['appsUnavailable[0].name', { ...hb, appsUnavailable: [{ name: '', reason: 'x' }] }],
    ['appsUnavailable[0].reason', { ...hb, appsUnavailable: [{ name: 'a', reason: 'r'.repeat(201) }] }],
    ['appsUnavailable[0].reason', { ...hb, appsUnavailable: [{ name: 'a' }] }],
  ]
  for (const [i, [field, x]] of cases.entries()) {
    it(`rejects a malformed ${field} and names it (case ${i})`, () => rejects(field, x))
  }

  it('the sender refuses to encode what its peers would reject', () => {
    assert.throws(() => encodeHeartbeat({ ...hb, speed: 0 }), { name: 'InvalidHeartbeatError' })
  })

  it('rejects more than 16 KiB, before parsing, and refuses to encode it', () => {
    const big = { ...hb, running: many(200, (i) => ({ ...hb.running[0], job: `job-${i}`.padEnd(64, 'x') })) }
    const bytes = raw(big)
    assert.ok(bytes.byteLength > MAX_HEARTBEAT_BYTES)
    assert.throws(() => decodeHeartbeat(bytes), { name: 'InvalidHeartbeatError', message: /too large/ })
    assert.throws(() => encodeHeartbeat(big as Heartbeat), {
      name: 'InvalidHeartbeatError',
      message: /too large/,
    })
    assert.throws(() => decodeHeartbeat(new Uint8Array(MAX_HEARTBEAT_BYTES + 1)), /too large/)
    // list bounds that 16 KiB cannot reach (1025 running tasks) are rejected by size
    assert.throws(
      () => decodeHeartbeat(raw({ ...hb, running: many(1025, () => hb.running[0]) })),
      /too large/,
    )
  })

  it('rejects other versions with a clear error that is still an InvalidHeartbeatError', () => {
    for (const v of [1, 3, '2', null, undefined]) {
      assert.throws(
        () => decodeHeartbeat(raw({ ...hb, v })),
        (err: Error) => {
          assert.ok(err instanceof UnsupportedHeartbeatVersionError)
          assert.ok(err instanceof InvalidHeartbeatError)
          assert.equal(err.name, 'UnsupportedHeartbeatVersionError')
          assert.match(err.message, /version .* is not supported: this node speaks version 2/)
          return true
        },
      )
    }
  })

  it('rejects bytes that are not a JSON object', () => {
    for (const bytes of [new Uint8Array([0xff, 0xfe]), raw('x').subarray(1), raw([hb]), raw(null), raw(2)]) {
      assert.throws(() => decodeHeartbeat(bytes), { name: 'InvalidHeartbeatError' })
    }
  })

  it('garbage (random JSON, random mutations of a valid heartbeat) is only ever rejected cleanly', () => {
    const isClean = (x: unknown) => {
      try {
        decodeHeartbeat(raw(x))
      } catch (err) {
        if (!(err instanceof InvalidHeartbeatError)) throw err
      }
    }
    // found by this test: an error message that called String() on a peer's {"toString": ""}
    isClean({ ...hb, v: { toString: '' } })
    isClean({ ...hb, name: { toString: '' }, seq: { valueOf: 1 } })
    fc.assert(fc.property(fc.jsonValue(), isClean), { numRuns: 500 })
    const keys = Object.keys(hb)
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue(), (k, v) => isClean({ ...hb, [k]: v })),
      { numRuns: 1000 },
    )
  })
})

describe('the heartbeat service', () => {
  it('beatSoon: changes made close together make one beat, telling the state after the last', async () => {
    const published: Heartbeat[] = []
    const pubsub = {
      publish: async (_topic: string, data: Uint8Array) => {
        published.push(decodeHeartbeat(data))
        return { recipients: [] }
      },
      removeEventListener: () => undefined,
      topicValidators: new Map(),
      unsubscribe: () => undefined,
    }
    let free = 1
    const { v: _v, seq: _seq, ...rest } = hb
    const service = heartbeat({ farmId: 'f', describe: () => ({ ...rest, free }), intervalMs: 60_000 })({
      peerId: undefined as never,
      logger: defaultLogger(),
      pubsub: pubsub as never,
    })
    service.beat()
    assert.equal(published.length, 1)
    // a slot frees, and takes its next task a few ms later
    free = 2
    service.beatSoon(30)
    await new Promise((r) => setTimeout(r, 5))
    free = 1
    service.beatSoon(30)
    assert.equal(published.length, 1, 'not yet')
    await new Promise((r) => setTimeout(r, 60))
    assert.equal(published.length, 2, 'one beat for both changes')
    assert.equal(published[1]!.free, 1)
    // a beat now takes a waiting one along
    service.beatSoon(30)
    service.beat()
    await new Promise((r) => setTimeout(r, 60))
    assert.equal(published.length, 3)
    service.beforeStop()
  })
})
