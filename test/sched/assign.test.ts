import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { assign, type HostSlots, type ReadyTask } from '../../src/sched/assign.ts'

const hostArb = fc.record({
  peer: fc.stringMatching(/^p[a-z]{1,4}$/),
  free: fc.integer({ min: 0, max: 4 }),
  apps: fc.subarray(['echo', 'sleep']).map((a) => new Set(a)),
})

describe('assignment', () => {
  it('is deterministic, respects slots and apps, and never gives a task twice', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(hostArb, { selector: (h) => h.peer, maxLength: 6 }),
        fc.array(fc.constantFrom('echo', 'sleep'), { maxLength: 30 }),
        (hosts: HostSlots[], apps) => {
          const tasks: ReadyTask[] = apps.map((app, i) => ({ key: `j/${i}`, app }))
          const a = assign(tasks, hosts)
          assert.deepEqual(assign(tasks, [...hosts].reverse()), a, 'host order does not matter')
          assert.equal(new Set(a.map((x) => x.key)).size, a.length)
          for (const h of hosts) {
            const mine = a.filter((x) => x.peer === h.peer)
            assert.ok(mine.length <= h.free)
            for (const x of mine) assert.ok(h.apps.has(tasks.find((t) => t.key === x.key)!.app))
          }
          const capacity = hosts.reduce((n, h) => n + h.free, 0)
          const runnable = tasks.filter((t) => hosts.some((h) => h.free > 0 && h.apps.has(t.app))).length
          if (hosts.every((h) => h.apps.size === 2)) assert.equal(a.length, Math.min(capacity, runnable))
        },
      ),
      { numRuns: 500 },
    )
  })

  it('spreads equal tasks over equal hosts', () => {
    const hosts = ['pa', 'pb', 'pc'].map((peer) => ({ peer, free: 2, apps: new Set(['echo']) }))
    const tasks = Array.from({ length: 6 }, (_, i) => ({ key: `j/${i}`, app: 'echo' }))
    const counts = new Map<string, number>()
    for (const x of assign(tasks, hosts)) counts.set(x.peer, (counts.get(x.peer) ?? 0) + 1)
    assert.deepEqual([...counts.values()], [2, 2, 2])
  })
})
