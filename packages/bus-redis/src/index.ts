// @portbind/bus-redis: the bus between portbind processes on a real Redis (issue 12). Work in progress.
export const BUS_REDIS_VERSION = '0.1.0';
