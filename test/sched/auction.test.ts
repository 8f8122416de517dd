import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { canRun, cheapSet, drainTime, schedule, TAIL_SD, whyNoHost } from '../../src/sched/auction.ts'
import type { Policy, Requirements, SchedHost, SchedTask } from '../../src/sched/types.ts'

function host(peer: string, speed: number, extra: Partial<SchedHost> = {}): SchedHost {
  return {
    peer,
    speed,
    slotFreeIn: [0],
    wattsLoaded: 100,
    price: 0.3,
    apps: new Map([['echo', '1.0.0']]),
    tags: new Set(),
    memoryMb: 8192,
    gpus: 0,
    ...extra,
  }
}

function task(i: number, work = 10, extra: Partial<SchedTask> = {}): SchedTask {
  return {
    key: `j/${i}`,
    job: 'j',
    work,
    requires: { app: 'echo', appVersion: null, tags: [], memoryMb: 0, gpus: 0 },
    policy: { kind: 'fast' },
    license: null,
    excluded: new Set(),
    ...extra,
  }
}

const noLicenses = new Map<string, number>()

describe('the auction', () => {
  it('gives a tail task to a fast host about to finish rather than an idle slow one', () => {
    const fast = host('fast', 8, { slotFreeIn: [1] })
    const slow = host('slow', 1)
    const [p] = schedule({ tasks: [task(0, 16)], hosts: [slow, fast], licenses: noLicenses })
    assert.equal(p!.peer, 'fast')
    assert.equal(p!.start, 1)
    assert.equal(p!.finish, 3) // vs 16 s on the slow host
  })

  it('at the end of the queue keeps a task that may run long off a slow host', () => {
    // expected: 8 s on the idle slow host beats 7.5 + 1 s on the busy fast one, if nothing goes
    // wrong; with a spread that makes the slow host's bad case (8 + 5 x 4 = 28 s) run far past the
    // farm's drain time, the fast host's bad case (7.5 + 3.5 s) is the safer end of the job
    const fast = host('fast', 8, { slotFreeIn: [7.5] })
    const slow = host('slow', 1)
    const t = task(0, 8, { workSd: 4 })
    const plain = schedule({ tasks: [t], hosts: [slow, fast], licenses: noLicenses })
    assert.equal(plain[0]!.peer, 'slow', 'without a drain time: plain earliest finish')
    const drainIn = drainTime([slow, fast], 8)
    assert.equal(drainIn, (8 + 7.5 * 8) / 9)
    const [p] = schedule({ tasks: [t], hosts: [slow, fast], licenses: noLicenses, drainIn })
    assert.equal(p!.peer, 'fast')
    assert.equal(p!.finish, 8.5)
    // early in a long queue the same task goes to the idle slow host: its bad case ends long before
    const early = schedule({ tasks: [t], hosts: [slow, fast], licenses: noLicenses, drainIn: 1000 })
    assert.equal(early[0]!.peer, 'slow')
    // and a job whose tasks do not vary takes no such detour
    const steady = schedule({
      tasks: [task(0, 8, { workSd: 0 })],
      hosts: [slow, fast],
      licenses: noLicenses,
      drainIn,
    })
    assert.equal(steady[0]!.peer, 'slow')
    assert.ok(TAIL_SD >= 1)
  })

  it('places equal tasks where they finish earliest, which is optimal: makespan meets the bound', () => {
    const hosts = [host('a', 1), host('b', 2), host('c', 4)]
    const tasks = Array.from({ length: 70 }, (_, i) => task(i, 1))
    const placed = schedule({ tasks, hosts, licenses: noLicenses, maxTasks: 70 })
    assert.equal(placed.length, 70)
    const makespan = Math.max(...placed.map((p) => p.finish))
    assert.ok(makespan <= 70 / 7 + 1, `makespan ${makespan} vs bound ${70 / 7}`)
    assert.deepEqual(
      placed.filter((p) => p.start === 0).map((p) => p.peer),
      ['c', 'b', 'a'],
    )
  })

  it("a GPU's measured speed counts, unless the job insists on the CPU", () => {
    // same CPU speed; the second host renders the app 5x faster on its GPU (its self-test said so)
    const tags = new Set(['device:cpu'])
    const cpu = host('cpu', 2, { tags })
    const gpu = host('gpu', 2, {
      tags: new Set(['device:cpu', 'device:gpu']),
      gpuSpeedup: new Map([['echo', 5]]),
    })
    const anyDevice = schedule({ tasks: [task(0, 20)], hosts: [cpu, gpu], licenses: noLicenses })
    assert.deepEqual(
      anyDevice.map((p) => [p.peer, p.finish]),
      [['gpu', 2]],
    )
    const cpuOnly = task(0, 20, {
      requires: { app: 'echo', appVersion: null, tags: ['device:cpu'], memoryMb: 0, gpus: 0 },
    })
    const [p] = schedule({ tasks: [cpuOnly], hosts: [cpu, gpu], licenses: noLicenses })
    assert.equal(p!.finish, 10, 'on the CPU either host needs 10 s')
  })

  it('respects apps, versions, tags, memory and gpus, exclusions and licenses', () => {
    const blender = (v: string) => new Map<string, string | null>([['blender', v]])
    const a = host('a', 1, { apps: blender('3.4.1'), tags: new Set(['studio']), gpus: 1 })
    const b = host('b', 9, { apps: blender('4.2.0') })
    const req = { app: 'blender', appVersion: '3.4', tags: ['studio'], memoryMb: 1000, gpus: 1 }
    assert.ok(canRun(a, req))
    assert.ok(!canRun(b, req))
    assert.ok(!canRun(a, { ...req, memoryMb: 10_000 }))
    const t = task(0, 1, { requires: req })
    assert.equal(schedule({ tasks: [t], hosts: [a, b], licenses: noLicenses })[0]!.peer, 'a')
    const excluded = task(0, 1, { excluded: new Set(['a']), requires: req })
    assert.deepEqual(schedule({ tasks: [excluded], hosts: [a, b], licenses: noLicenses }), [])
    const lic = [0, 1, 2].map((i) => task(i, 1, { license: 'redshift' }))
    const many = [host('x', 1), host('y', 1), host('z', 1)]
    const placed = schedule({ tasks: lic, hosts: many, licenses: new Map([['redshift', 2]]) })
    assert.equal(placed.filter((p) => p.start === 0).length, 2)
  })

  it('takes a version, a range or a floor of versions, each bound over its own parts', () => {
    const on = (v: string | null) => host('h', 1, { apps: new Map([['blender', v]]) })
    const ok = (pin: string, v: string | null) =>
      canRun(on(v), { app: 'blender', appVersion: pin, tags: [], memoryMb: 0, gpus: 0 })
    assert.ok(ok('3.4', '3.4.1') && ok('3.4', '3.4') && !ok('3.4', '3.40.1') && !ok('3.4', '3.5.0'))
    assert.ok(ok('3.4.1', '3.4.1') && !ok('3.4.1', '3.4.10') && !ok('3.4.1', '3.4'))
    assert.ok(ok('3.4-3.6', '3.4.0') && ok('3.4-3.6', '3.6.9') && ok('3.4-3.6', '3.5.2'))
    assert.ok(!ok('3.4-3.6', '3.3.21') && !ok('3.4-3.6', '3.7.0') && !ok('3.4-3.6', '4.0'))
    assert.ok(ok('3.6+', '3.6.0') && ok('3.6+', '4.2.1') && !ok('3.6+', '3.5.9'))
    assert.ok(!ok('3.4', null), 'a version not known is not in any pin')
  })

  it('says which requirement no host meets', () => {
    const blender = (v: string | null) => new Map<string, string | null>([['blender', v]])
    const a = host('a', 1, { apps: blender('3.4.1'), tags: new Set(['studio']), memoryMb: 4096 })
    const b = host('b', 1, { apps: blender(null), gpus: 1, memoryMb: 16384 })
    const req: Requirements = { app: 'blender', appVersion: null, tags: [], memoryMb: 0, gpus: 0 }
    const why = (r: Partial<typeof req>, hosts = [a, b]) => whyNoHost({ ...req, ...r }, hosts)
    assert.equal(why({}), null)
    assert.equal(why({ app: 'houdini' }), 'no host runs houdini')
    assert.equal(why({}, []), 'no host runs blender')
    assert.equal(
      why({ appVersion: '9.9' }),
      'it needs blender 9.9; the hosts have blender 3.4.1, an unknown version',
    )
    assert.equal(
      why({ appVersion: '3.4', memoryMb: 8000 }),
      'it needs 8000 MiB of memory; the hosts that run it have at most 4096 MiB',
    )
    assert.equal(
      why({ appVersion: '3.4', gpus: 1 }),
      'it needs 1 GPU(s); the hosts that run it have at most 0',
    )
    assert.equal(
      why({ tags: ['farm'] }),
      'it needs tag(s) farm, which no host that meets its other needs has',
    )
    assert.equal(
      why({ tags: ['studio'], gpus: 1 }),
      'it needs tag(s) studio, which no host that meets its other needs has',
      'a has the tag but no GPU: the tag is what the hosts with a GPU lack',
    )
    // a property: a reason exactly when no host can run it
    fc.assert(
      fc.property(
        fc.record({
          appVersion: fc.constantFrom(null, '3.4', '4.2'),
          memoryMb: fc.constantFrom(0, 5000, 20000),
          gpus: fc.constantFrom(0, 1, 2),
          tags: fc.subarray(['studio', 'farm']),
        }),
        (r) => {
          const full = { ...req, ...r }
          assert.equal(
            why(r) === null,
            [a, b].some((h) => canRun(h, full)),
          )
        },
      ),
    )
  })

  it('a host that failed a task gets it again only when no other host can', () => {
    const t = task(0, 1, { avoid: new Set(['fast']) })
    assert.equal(
      schedule({ tasks: [t], hosts: [host('fast', 8), host('slow', 1)], licenses: noLicenses })[0]!.peer,
      'slow',
    )
    assert.equal(schedule({ tasks: [t], hosts: [host('fast', 8)], licenses: noLicenses })[0]!.peer, 'fast')
  })

  it('prefer cheap keeps to the cheapest hosts with enough speed for the slack', () => {
    // three hosts of equal speed; energy per unit of work 30 < 100 < 400 W
    const frugal = host('frugal', 1, { wattsLoaded: 30 })
    const mid = host('mid', 1, { wattsLoaded: 100 })
    const hungry = host('hungry', 1, { wattsLoaded: 400 })
    const cheap: Policy = { kind: 'cheap', slack: 0.5 }
    const tasks = Array.from({ length: 12 }, (_, i) => task(i, 1, { policy: cheap }))
    const all = [hungry, mid, frugal]
    // 1 / (1 + 0.5) of the speed: two hosts are enough, the hungry one is left out
    assert.deepEqual(cheapSet(all, [0, 1, 2], 0.5, 1), [1, 2])
    const placed = schedule({ tasks, hosts: all, licenses: noLicenses, maxTasks: 12 })
    assert.equal(placed.filter((p) => p.peer === 'hungry').length, 0)
    const makespan = Math.max(...placed.map((p) => p.finish))
    assert.ok(makespan <= 1.5 * (12 / 3) + 1e-9, `makespan ${makespan} within (1 + slack) x bound 4`)
    // no slack: every host is needed
    const strict = tasks.map((t) => ({ ...t, policy: { kind: 'cheap', slack: 0 } as Policy }))
    assert.equal(
      schedule({ tasks: strict, hosts: all, licenses: noLicenses, maxTasks: 12 }).filter(
        (p) => p.peer === 'hungry',
      ).length,
      4,
    )
    const fast = schedule({
      tasks: tasks.map((t) => ({ ...t, policy: { kind: 'fast' } })),
      hosts: all,
      licenses: noLicenses,
      maxTasks: 12,
    })
    assert.equal(fast.filter((p) => p.peer === 'hungry').length, 4)
  })

  it('is deterministic whatever the order of hosts; never over-fills a slot now', () => {
    const hostArb = fc.record({
      peer: fc.stringMatching(/^p[a-z]{1,5}$/),
      speed: fc.double({ min: 0.5, max: 8, noNaN: true }),
      slots: fc.array(
        fc.double({ min: 0, max: 5, noNaN: true }).map((x) => (x < 1 ? 0 : x)),
        { minLength: 1, maxLength: 3 },
      ),
      watts: fc.integer({ min: 20, max: 400 }),
      price: fc.option(fc.double({ min: 0.05, max: 0.6, noNaN: true })),
    })
    fc.assert(
      fc.property(
        fc.uniqueArray(hostArb, { selector: (h) => h.peer, minLength: 1, maxLength: 8 }),
        fc.array(fc.double({ min: 0.1, max: 50, noNaN: true }), { maxLength: 40 }),
        fc.constantFrom<Policy>({ kind: 'fast' }, { kind: 'cheap', slack: 0.2 }, { kind: 'balanced' }),
        fc.option(fc.double({ min: 0, max: 20, noNaN: true })), // the job's spread: known or not
        fc.option(fc.double({ min: 0, max: 100, noNaN: true })), // drain time: given or not
        (hs, works, policy, sd, drain) => {
          const hosts = hs.map((h) =>
            host(h.peer, h.speed, { slotFreeIn: h.slots, wattsLoaded: h.watts, price: h.price }),
          )
          const tasks = works.map((w, i) => task(i, w, { policy, ...(sd === null ? {} : { workSd: sd }) }))
          const drainIn = drain ?? undefined
          const a = schedule({ tasks, hosts, licenses: noLicenses, drainIn })
          assert.deepEqual(schedule({ tasks, hosts: [...hosts].reverse(), licenses: noLicenses, drainIn }), a)
          // stopping once the free slots are taken claims exactly what the full plan would start now
          const freeNow = hosts.reduce((n, h) => n + h.slotFreeIn.filter((x) => x === 0).length, 0)
          const plan = schedule({
            tasks,
            hosts,
            licenses: noLicenses,
            maxTasks: freeNow + 2 * hosts.length,
            drainIn,
          })
          const now = (ps: typeof a) => ps.filter((p) => p.start === 0)
          assert.deepEqual(now(a), now(plan))
          assert.equal(new Set(a.map((p) => p.key)).size, a.length)
          for (const h of hosts) {
            const freeNow = h.slotFreeIn.filter((x) => x === 0).length
            assert.ok(a.filter((p) => p.peer === h.peer && p.start === 0).length <= freeNow)
          }
        },
      ),
      { numRuns: 300 },
    )
  })
})
