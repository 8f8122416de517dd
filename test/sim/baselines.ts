// Baselines on the same farm and tasks, without gossip or faults (a central queue, as the farms they
// stand for have): FCFS pull (an idle worker takes the next queued task in priority order, optionally
// only when it polls) and random (the next queued task goes to a free slot picked at random).

import { EventQueue } from './heap.ts'
import type { SimHost, Workload } from './model.ts'
import { fork, shuffle, unit } from './prng.ts'

export type Baseline = 'fcfs' | 'random'

export interface BaselineExecution {
  readonly task: number
  readonly peer: number
  readonly start: number
  readonly end: number
}

export interface BaselineRun {
  readonly executions: readonly BaselineExecution[]
  readonly doneAt: Float64Array
  readonly firstStart: Float64Array
  readonly end: number
}

type Ev = { at: number; kind: 'free' | 'poll'; slot: number } | { at: number; kind: 'arrive' }

/** `poll`: seconds between an idle FCFS worker's requests (0: it asks the moment it is free). */
export function runBaseline(
  hosts: readonly SimHost[],
  work: Workload,
  kind: Baseline,
  poll: number,
  seed: number,
): BaselineRun {
  const r = fork(seed, kind === 'fcfs' ? 11 : 12)
  const slots = hosts.flatMap((h) => Array.from({ length: h.slots }, () => h.index))
  const tasks = work.tasks
  const doneAt = new Float64Array(tasks.length).fill(Number.NaN)
  const firstStart = new Float64Array(tasks.length).fill(Number.NaN)
  const executions: BaselineExecution[] = []
  const q = new EventQueue<Ev>()
  const free = new Set<number>()
  const waiting: number[] = []
  let next = 0
  let end = 0

  const start = (slot: number, now: number) => {
    const t = tasks[next++]!
    const peer = slots[slot]!
    const finish = now + t.work / hosts[peer]!.speed
    executions.push({ task: t.index, peer, start: now, end: finish })
    firstStart[t.index] = now
    doneAt[t.index] = finish
    end = Math.max(end, finish)
    free.delete(slot)
    q.push({ at: finish, kind: 'free', slot })
  }
  const ready = (now: number) => next < tasks.length && tasks[next]!.readyAt <= now
  const phase = (slot: number) => unit(seed ^ 0x9011, slot, 0) * poll
  const nextPoll = (slot: number, now: number) =>
    poll === 0 ? now : phase(slot) + Math.ceil((now - phase(slot)) / poll - 1e-9) * poll

  // at time 0 every worker is idle: they ask in a random order
  for (const s of shuffle(
    r,
    slots.map((_, i) => i),
  )) {
    free.add(s)
    q.push(kind === 'fcfs' ? { at: nextPoll(s, 0), kind: 'poll', slot: s } : { at: 0, kind: 'arrive' })
  }
  for (const at of new Set(tasks.map((t) => t.readyAt))) q.push({ at, kind: 'arrive' })

  for (let ev = q.pop(); ev !== undefined; ev = q.pop()) {
    const now = ev.at
    if (kind === 'random') {
      if (ev.kind === 'free') free.add(ev.slot)
      while (ready(now) && free.size > 0) {
        const list = [...free]
        start(list[Math.floor(r() * list.length)]!, now)
      }
      continue
    }
    if (ev.kind === 'arrive') {
      for (const s of waiting.splice(0)) q.push({ at: nextPoll(s, now), kind: 'poll', slot: s })
    } else if (ev.kind === 'free') {
      free.add(ev.slot)
      q.push({ at: nextPoll(ev.slot, now), kind: 'poll', slot: ev.slot })
    } else if (ready(now)) {
      start(ev.slot, now)
    } else if (next < tasks.length) {
      if (poll === 0) waiting.push(ev.slot)
      else q.push({ at: now + poll, kind: 'poll', slot: ev.slot })
    }
  }
  return { executions, doneAt, firstStart, end }
}
