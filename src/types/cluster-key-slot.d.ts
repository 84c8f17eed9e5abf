// cluster-key-slot (the Redis Cluster CRC16 key slot, a dependency of ioredis) ships no types.
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot (0..16383) of a key, honouring {hash tags}. */
  function calculateSlot(key: string | Buffer): number;
  export default calculateSlot;
}
