// The real redis-server the tests compare bytes with: test/support/redis-server.ts, shared with examples/mini-redis.
export { REDIS_SERVER, type Server, startRedis } from '../../../test/support/redis-server.js';
