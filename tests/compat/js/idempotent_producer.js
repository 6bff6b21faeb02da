'use strict'
// An idempotent kafkajs producer for test_idempotence_faults.py, which puts a fault-injecting proxy between
// it and the broker:
//
//   node idempotent_producer.js   with a JSON request on stdin:
//     { "brokers": [...], "topic": "...", "messages": [{ "key": "...", "value": "..." }, ...],
//       "partition": 0 (optional; else kafkajs's default partitioner), "perSend": 20, "maxInFlightRequests": 1 }
//
// Messages go out in order, perSend at a time, each send awaited before the next, so the broker sees many
// Produce requests and the proxy has many to aim at. The JSON result on stdout says how many sends were
// acknowledged; kafkajs logs go to stderr.

const { Kafka, Partitioners, logLevel } = require('kafkajs')

const REQUEST_TIMEOUT_MS = 30000
// Retry at once and without end (the idempotent producer's default count), so injected faults cost little
// time; the test bounds the whole run.
const RETRY = { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 20, maxRetryTime: 500 }

const logToStderr = () => ({ namespace, label, log }) => {
  const { message, ...details } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(details)}\n`)
}

async function produce (request) {
  const kafka = new Kafka({
    clientId: 'strom-compat-idempotent',
    brokers: request.brokers,
    logLevel: logLevel.WARN,
    logCreator: logToStderr,
    requestTimeout: REQUEST_TIMEOUT_MS,
    retry: RETRY
  })
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: request.maxInFlightRequests,
    retry: RETRY,
    createPartitioner: Partitioners.DefaultPartitioner
  })
  await producer.connect()
  let sends = 0
  try {
    for (let start = 0; start < request.messages.length; start += request.perSend) {
      const messages = request.messages.slice(start, start + request.perSend).map(({ key, value }) => {
        const message = { key, value }
        if (request.partition !== undefined) message.partition = request.partition
        return message
      })
      await producer.send({ topic: request.topic, messages, acks: -1, timeout: REQUEST_TIMEOUT_MS })
      sends += 1
    }
  } finally {
    await producer.disconnect()
  }
  return { sends }
}

async function readStdin () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

// kafkajs can leave retry timers behind, so the process exits explicitly once the answer is written.
readStdin()
  .then(text => produce(JSON.parse(text)))
  .then(
    result => {
      process.stdout.write(JSON.stringify(result))
      process.exit(0)
    },
    error => {
      process.stderr.write(`${error.name}: ${error.message}\n${error.stack}\n`)
      process.exit(1)
    }
  )
