// One peer's scheduler input, built from its view the way a node would: the hosts it does not suspect
// (with each slot's free time estimated from what it is running), and the head of the ready queue in
// priority order.

import { drainTime } from '../../src/sched/auction.ts'
import type { SchedHost, SchedInput, SchedTask } from '../../src/sched/types.ts'
import type { SimHost, Workload } from './model.ts'
import type { Network } from './net.ts'
import { QUEUE, type View } from './view.ts'

/** The scheduler's default head: free slots now + 2 per host (see SchedInput.maxTasks). */
const LOOKAHEAD_PER_HOST = 2

/** A busy slot is never reported free now, even when its task overruns its estimate. */
const BUSY_FLOOR = 1e-3

export class InputBuilder {
  readonly schedTasks: readonly SchedTask[]
  private readonly hosts: readonly SimHost[]
  private readonly work: Workload
  private readonly net: Network
  private readonly settle: number
  private readonly estimate: Float64Array
  private readonly apps = new Map<string, string | null>([['echo', '1.0']])
  private readonly tags = new Set<string>()

  constructor(hosts: readonly SimHost[], work: Workload, net: Network, settle: number) {
    this.hosts = hosts
    this.work = work
    this.net = net
    this.settle = settle
    this.estimate = Float64Array.from(work.tasks, (t) => t.estimate)
    const requires = { app: 'echo', appVersion: null, tags: [], memoryMb: 0, gpus: 0 }
    const excluded = new Set<string>()
    this.schedTasks = work.tasks.map((t) => ({
      key: t.key,
      job: t.job,
      work: t.estimate,
      ...(t.estimateSd === null ? {} : { workSd: t.estimateSd }),
      requires,
      policy: t.policy,
      license: null,
      excluded,
    }))
  }

  build(view: View, peer: number, t: number): SchedInput {
    const hosts: SchedHost[] = []
    let freeNow = 0
    let queued = 0 // work units of the ready queue, head and rest
    for (const h of this.hosts) {
      if (this.net.suspect(peer, h.index, t)) continue
      const fact = view.hosts[h.index]!
      const slotFreeIn = fact.slots.map((s) => {
        if (s === null) {
          freeNow++
          return 0
        }
        const end = s.since + (s.run ? 0 : this.settle) + this.estimate[s.task]! / h.speed
        return Math.max(BUSY_FLOOR, end - t)
      })
      hosts.push({
        peer: h.peer,
        speed: h.speed,
        slotFreeIn,
        wattsLoaded: h.watts,
        price: h.price,
        apps: this.apps,
        tags: this.tags,
        memoryMb: 65_536,
        gpus: 0,
      })
    }
    const limit = freeNow + LOOKAHEAD_PER_HOST * hosts.length
    const tasks: SchedTask[] = []
    const all = this.work.tasks
    for (let k = view.advanceLwm(); k < all.length; k++) {
      if (view.stage[k] !== QUEUE || all[k]!.readyAt > t) continue
      queued += this.estimate[k]!
      if (tasks.length < limit) tasks.push(this.schedTasks[k]!)
    }
    return { tasks, hosts, licenses: new Map(), drainIn: drainTime(hosts, queued) }
  }
}
