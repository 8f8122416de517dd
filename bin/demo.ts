// npm run demo: a farm of three peers on this machine (what `openfarm join` does on three machines).
// With Blender and ffmpeg installed, the laptop submits a small animated scene (an external texture,
// a linked library): the farm renders its 12 frames, they come home to ./demo-render, and a dependent
// ffmpeg job makes demo-render/main.mp4. Without Blender it runs a job of `sleep` tasks instead.

import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { ApiClient } from '../src/node/client.ts'
import { FarmKey } from '../src/node/farmkey.ts'
import { type RunningNode, serve } from '../src/node/serve.ts'
import { blenderMissing, makeTestScene } from '../test/fixtures/blender/make-scene.ts'
import { submitBlender } from './blender.ts'
import { counts, short, table } from './format.ts'

interface Job {
  id: string
  state: string
  counts: Record<string, number>
  tasks: { index: number; state: string; owner: string | null }[]
  progress: Record<string, { frame?: number; progress?: number }>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'openfarm-demo-'))
  const key = FarmKey.generate()
  const nodes: RunningNode[] = []
  const missing = await blenderMissing()
  try {
    console.log(`farm ${key.farmId()}: starting three peers on 127.0.0.1 (data in ${dir})`)
    if (missing === null) console.log('(each peer self-tests Blender and ffmpeg as it joins: a few seconds)')
    for (const name of ['attic', 'desk', 'laptop']) {
      const bootstrap = nodes.length > 0 ? [nodes[0]!.node.addresses()[0]!] : []
      const n = await serve({
        dataDir: join(dir, name),
        key,
        configFile: null,
        flags: { name, slots: missing === null ? '1' : '2' },
        listen: ['/ip4/127.0.0.1/tcp/0'],
        bootstrap,
        mdns: false,
      })
      nodes.push(n)
      console.log(`  ${name}: ${n.node.peerId}`)
    }
    const attic = nodes[0]!.node
    const names = new Map(nodes.map((n) => [n.node.peerId, n.node.name]))
    // every peer hears every host alive, offering what its self-tests passed
    await Promise.all(nodes.map((n) => n.appsReady))
    const offers = new Map(nodes.map((n) => [n.node.peerId, n.apps.length]))
    const formed = (n: RunningNode) => {
      const alive = n.node.hosts().filter((h) => h.liveness === 'alive')
      return alive.length === 3 && alive.every((h) => h.apps.length === offers.get(h.peer))
    }
    for (let t = 0; !nodes.every(formed); t++) {
      if (t > 400) throw new Error('timed out waiting for the peers to see each other')
      await sleep(50)
    }
    console.log('\nthe three peers see each other (openfarm hosts on attic):\n')
    console.log(
      table(
        ['HOST', 'STATE', 'SLOTS', 'APPS'],
        attic
          .hosts()
          .map((h) => [h.name, h.liveness, `${h.free}/${h.slots} free`, h.apps.map((a) => a.name).join(',')]),
      ),
    )
    const onLaptop = await ApiClient.connect(join(dir, 'laptop'))
    const onAttic = await ApiClient.connect(join(dir, 'attic'))
    let watch: string[]
    const out = resolve('demo-render')
    if (missing === null) {
      const scene = await makeTestScene(await mkdtemp(join(dir, 'project-')))
      console.log(
        `\n$ openfarm submit blender ${scene.blend} --chunk 4 --out ./demo-render --video   # on laptop`,
      )
      const jobs = await submitBlender(
        onLaptop,
        scene.blend,
        { chunk: '4', out, video: true, overwrite: true },
        Date.now(),
        join(dir, 'laptop'),
      )
      watch = jobs.map((j) => j.id)
    } else {
      console.log(`\n${missing}\nso the demo runs sleep tasks instead.`)
      console.log('\n$ openfarm submit sleep --frames 1-12 --chunk 2 --set seconds=1   # on laptop')
      const job = await onLaptop.post<{ id: string }>('/v1/jobs', {
        app: 'sleep',
        name: 'demo',
        frames: '1-12',
        chunk: 2,
        settings: { seconds: 1 },
      })
      watch = [job.id]
    }
    console.log(`\n$ openfarm status JOB   # on attic, every second`)
    const started = Date.now()
    for (;;) {
      const jobs = await Promise.all(watch.map((id) => onAttic.get<Job>(`/v1/jobs/${id}`)))
      for (const j of jobs) {
        const where = j.tasks
          .map((t) => {
            const p = j.progress[String(t.index)]
            const at = p?.frame === undefined ? '' : `@${p.frame}`
            return `${t.index}:${t.owner === null ? '-' : names.get(t.owner)}${t.state === 'RUN' ? at : ''}`
          })
          .join(' ')
        const s = ((Date.now() - started) / 1000).toFixed(1)
        console.log(`  ${s}s  ${j.id} ${j.state.padEnd(5)} ${counts(j.counts)}   ${where}`)
      }
      const last = jobs.at(-1)!
      if (jobs.some((j) => j.state === 'FAIL')) throw new Error('a job failed: see `openfarm status` above')
      if (last.state === 'DONE') {
        const first = jobs[0]!
        console.log(
          `\n${table(
            ['TASK', 'STATE', 'HOST'],
            first.tasks.map((t) => [
              String(t.index),
              t.state,
              t.owner === null ? '-' : `${names.get(t.owner)} (${short(t.owner)})`,
            ]),
          )}`,
        )
        console.log(`\ndone in ${((Date.now() - started) / 1000).toFixed(1)} s on three peers, no master.`)
        if (missing === null) {
          for (let t = 0; (await readdir(out).catch(() => [])).length < 13 && t < 100; t++) await sleep(100)
          const files = (await readdir(out)).sort()
          console.log(`${files.length} files came home to ${out}: ${files[0]} ... ${files.at(-1)}`)
        }
        console.log('Next: `npx openfarm init`, then `npx openfarm join` on each machine (see README.md).')
        return
      }
      await sleep(1000)
    }
  } finally {
    await Promise.all(nodes.map((n) => n.stop()))
    await rm(dir, { recursive: true, force: true })
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`demo failed: ${err.message}`)
    process.exit(1)
  },
)
