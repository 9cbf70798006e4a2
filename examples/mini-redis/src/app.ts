import { PortService, type PortServiceOptions } from '@portbind/core';
import { httpAdapter } from '@portbind/http';
import { respAdapter } from '@portbind/resp';

/** A PortService with mini-redis on RESP_PORT and its health endpoint on PORT. */
export function createMiniRedis(options: PortServiceOptions = {}): PortService {
  const resp = respAdapter();
  const service = new PortService(options);
  service.bind(resp);
  service.bind(httpAdapter({ health: true }));
  return service;
}
