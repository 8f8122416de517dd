// Scheduling on a real farm on loopback: requirements, license seats, dependencies and conditions,
// said from one peer and honoured by all.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ApiClient } from '../../src/node/client.ts'
import { FarmKey } from '../../src/node/farmkey.ts'
import { type RunningNode, serve } from '../../src/node/serve.ts'
import { tempDir, waitFor } from '../helpers.ts'

interface Job {
  id: string
  state: string
  waitingOn: string[]
  counts: Record<string, number>
  tasks: { index: number; state: string; owner: string | null }[]
}

describe('scheduling on a farm of three', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  const key = FarmKey.generate()
  const nodes: { node: RunningNode; client: ApiClient }[] = []
  const peer = (i: number) => nodes[i]!.node.node.peerId
  const api = (i: number) => nodes[i]!.client
  const job = (i: number, id: string) => api(i).get<Job>(`/v1/jobs/${id}`)
  const doneOn = (i: number, id: string) =>
    waitFor(`${id} DONE`, async () => {
      const j = await job(i, id)
      return j.state === 'DONE' ? j : undefined
    })

  before(async () => {
    dir = await tempDir('sched')
    const specs = [
      { name: 'slow', speed: '1', tags: '' },
      { name: 'mid', speed: '2', tags: 'studio' },
      { name: 'fast', speed: '4', tags: '', slots: '2' },
    ]
    for (const [i, f] of specs.entries()) {
      const node = await serve({
        dataDir: join(dir.path, f.name),
        key,
        configFile: null,
        // no Blender here: its self-test would add seconds to each start
        flags: { ...f, disableApps: ['blender', 'ffmpeg'] },
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap: i === 0 ? [] : [nodes[0]!.node.node.addresses()[0]!],
        mdns: false,
        heartbeatMs: 200,
        antiEntropyMs: 1_000,
        redialMs: 300,
      })
      nodes.push({ node, client: await ApiClient.connect(join(dir.path, f.name)) })
    }
    await waitFor('every node sees three hosts', () =>
      nodes.every((n) => n.node.node.hosts().filter((h) => h.liveness === 'alive').length === 3),
    )
  })

  after(async () => {
    await Promise.all(nodes.map((n) => n.node.stop()))
    await dir.remove()
  })

  it('hosts announce speed, watts, price and tags; every peer lists them', async () => {
    const hosts =
      await api(0).get<{ name: string; speed: number; tags: string[]; wattsLoaded: number }[]>('/v1/hosts')
    const byName = new Map(hosts.map((h) => [h.name, h]))
    assert.equal(byName.get('fast')!.speed, 4)
    assert.deepEqual(byName.get('mid')!.tags, ['studio'])
    assert.ok(byName.get('slow')!.wattsLoaded > 0)
  })

  it('a job that requires a tag runs only on the host that has it', async () => {
    const sub = await api(0).post<{ id: string }>('/v1/jobs', {
      app: 'echo',
      frames: '1-6',
      requires: { tags: ['studio'] },
    })
    const done = await doneOn(2, sub.id)
    assert.ok(done.tasks.every((t) => t.owner === peer(1)))
  })

  it('the fast host takes most of a job of equal tasks', async () => {
    const sub = await api(1).post<{ id: string }>('/v1/jobs', {
      app: 'sleep',
      frames: '1-14',
      settings: { seconds: 0.2 },
    })
    const done = await doneOn(0, sub.id)
    const onFast = done.tasks.filter((t) => t.owner === peer(2)).length
    const onSlow = done.tasks.filter((t) => t.owner === peer(0)).length
    assert.ok(onFast > onSlow, `fast ran ${onFast}, slow ran ${onSlow}`)
  })

  it('a license with one seat lets one task run at a time, farm-wide', async () => {
    await api(2).post('/v1/licenses', { name: 'redshift', seats: 1 })
    await waitFor('the license on peer 0', () => nodes[0]!.node.node.farm.licenses().get('redshift') === 1)
    const sub = await api(0).post<{ id: string }>('/v1/jobs', {
      app: 'sleep',
      frames: '1-4',
      settings: { seconds: 0.3 },
      license: 'redshift',
    })
    let most = 0
    await waitFor(
      'licensed job DONE',
      async () => {
        const j = await job(1, sub.id)
        most = Math.max(most, j.counts.RUN! + j.counts.CLAIM!)
        return j.state === 'DONE'
      },
      { stepMs: 10 },
    )
    assert.equal(most, 1)
  })

  it('frame by frame: the encode task of frames 1-2 starts once those frames are rendered', async () => {
    const render = await api(0).post<{ id: string }>('/v1/jobs', {
      app: 'sleep',
      frames: '1-4',
      chunk: 2,
      settings: { seconds: 0.5 },
      manual: true,
    })
    const encode = await api(1).post<{ id: string }>('/v1/jobs', {
      app: 'echo',
      frames: '1-4',
      chunk: 2,
      taskDeps: [render.id.slice(0, 7)],
    })
    assert.deepEqual(
      (await job(2, encode.id)).tasks.map((t) => t.state),
      ['WAIT', 'WAIT'],
    )
    assert.deepEqual((await waitFor('render on 2', () => job(2, render.id))).waitingOn, ['manual release'])
    await api(2).post(`/v1/jobs/${render.id}/release`)
    await doneOn(0, encode.id)
    await doneOn(0, render.id)
  })

  it('a job not before a time WAITs until then', async () => {
    const sub = await api(0).post<{ id: string; state: string }>('/v1/jobs', {
      app: 'echo',
      frames: '1',
      notBefore: Date.now() + 1_500,
    })
    assert.equal(sub.state, 'WAIT')
    await doneOn(1, sub.id)
  })
})
