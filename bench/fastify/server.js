'use strict'
// The bench's Fastify anchor (bench/compare.py starts and stops it): the bare FastAPI anchor's paths, each
// answering the bytes that anchor answers (BENCH_BODIES, a JSON object of path -> body, read once), on
// 127.0.0.1:BENCH_PORT, in BENCH_WORKERS processes like uvicorn's --workers: cluster workers accepting on one
// shared socket (SCHED_NONE, as uvicorn's workers do), no logging. SIGTERM to the process group stops it all.

const cluster = require('node:cluster')
const fastify = require('fastify')

const workers = Number(process.env.BENCH_WORKERS || '1')

if (workers > 1 && cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_NONE
  for (let i = 0; i < workers; i++) cluster.fork()
  // A worker that dies leaves the anchor short of processes: better no figures than wrong ones.
  cluster.on('exit', () => process.exit(1))
} else {
  const app = fastify({ logger: false })
  for (const [path, body] of Object.entries(JSON.parse(process.env.BENCH_BODIES || '{}'))) {
    app.get(path, (request, reply) => {
      reply.type('application/json').send(body)
    })
  }
  app.listen({ host: '127.0.0.1', port: Number(process.env.BENCH_PORT) }).catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
