'use strict'
// The e-commerce service's consumer, set up exactly as the course's NestJS code does it, for
// test_groups_kafkajs.py:
//
//   node seed_consumer.js '{"brokers": [...]}'
//
// A registry creates one kafkajs consumer per domain consumer (session timeout 30 s, heartbeat every 3 s,
// rebalance timeout 60 s), subscribes it without reading from the beginning, parses every value as JSON and
// hands it to the domain consumer; handler errors are logged and swallowed. The only domain consumer is
// NotifyPayCompletedConsumer (group notify-service, topic pay.completed), whose call to the external
// platform is replaced by a report on stdout. Reports are JSON lines: "joined" (kafkajs's GROUP_JOIN
// payload), "fetched" (the first fetch after joining has returned, so the start offsets are settled),
// "handled" (an order the handler received) and "closed". It disconnects when stdin says "close" or ends.

const readline = require('readline')
const { Kafka, logLevel } = require('kafkajs')

function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

const logToStderr = () => ({ namespace, label, log }) => {
  const { message, ...details } = log
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(details)}\n`)
}

class NotifyPayCompletedConsumer {
  getTopic () { return 'pay.completed' }
  getGroupId () { return 'notify-service' }
  async handleMessage (order) { sendOrderInfoToExtPlatform(order) }
}

function sendOrderInfoToExtPlatform (order) {
  emit('handled', { order })
}

class ConsumerRegistry {
  constructor (kafka, implementations) {
    this.kafka = kafka
    this.implementations = implementations
    this.consumers = []
  }

  async start () {
    for (const implementation of this.implementations) {
      const consumer = this.kafka.consumer({
        groupId: implementation.getGroupId(),
        sessionTimeout: 30000,
        heartbeatInterval: 3000,
        rebalanceTimeout: 60000
      })
      reportGroupEvents(consumer)
      await consumer.connect()
      await consumer.subscribe({ topic: implementation.getTopic(), fromBeginning: false })
      await consumer.run({
        eachMessage: async ({ message }) => {
          try {
            await implementation.handleMessage(JSON.parse(message.value.toString()))
          } catch (error) {
            process.stderr.write(`handler failed: ${error}\n`)
          }
        }
      })
      this.consumers.push(consumer)
    }
  }

  async stop () {
    for (const consumer of this.consumers) await consumer.disconnect()
  }
}

function reportGroupEvents (consumer) {
  let fetchedSinceJoin = true
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    fetchedSinceJoin = false
    emit('joined', payload)
  })
  consumer.on(consumer.events.FETCH, () => {
    if (!fetchedSinceJoin) emit('fetched')
    fetchedSinceJoin = true
  })
}

async function main () {
  const { brokers } = JSON.parse(process.argv[2])
  const kafka = new Kafka({ clientId: 'ecommerce-server', brokers, logLevel: logLevel.INFO, logCreator: logToStderr })
  const registry = new ConsumerRegistry(kafka, [new NotifyPayCompletedConsumer()])
  await registry.start()
  const input = readline.createInterface({ input: process.stdin })
  await new Promise(resolve => {
    input.on('line', line => { if (line.trim() === 'close') resolve() })
    input.on('close', resolve)
  })
  await registry.stop()
  emit('closed')
}

main().then(
  () => process.exit(0),
  error => {
    process.stderr.write(`${error.name}: ${error.message}\n${error.stack}\n`)
    process.exit(1)
  }
)
