#!/usr/bin/python3
"""A FUSE file system for power-cut tests (the method of LazyFS), on Debian's pyfuse3.

Mounts BACKING at MOUNTPOINT. Data written to a file is held in this process's memory until that
file is fsynced (fsync or fdatasync, or a write through an O_SYNC/O_DSYNC descriptor, which is
made durable at once); reads are served from what is held, merged over the backing file. Names
and metadata go straight through: create, mkdir, rename, unlink, rmdir, chmod and truncate change
the backing directory at once, so a directory fsync has nothing left to do. A file renamed into
place without an fsync of its data is therefore found empty after a cut, as on ext4 with delayed
allocation.

The kernel's caches are off so that a loss cannot hide: entry and attribute timeouts are 0, no
keep_cache (the page cache of a file is dropped at each open) and no writeback cache; data is still
served through the page cache (no direct_io), because LMDB maps its data file with mmap and
reads through the map. After a cut the file system is unmounted and mounted again by a new
process, so no page of the old mount survives.

Commands, one a line on stdin, each answered with one JSON line on stdout:
  stats   what is held now: {"files": n, "bytes": n, "fsyncs": n, "dirFsyncs": n}
  cut     drops everything not yet fsynced, answers what was dropped, then unmounts and exits
          without writing anything more. End of input does the same.
The first line on stdout, {"mounted": "<mountpoint>"}, says the mount is ready.
"""

import errno
import json
import os
import stat
import sys

import pyfuse3
import trio

BLOCK = 4096


class Inode:
    """One file or directory: where it is in the backing tree and the data written but not synced."""

    def __init__(self, number, path):
        self.number = number
        self.paths = {path}
        self.lookups = 0
        # Block index -> bytearray(BLOCK): the file's newest content for each block written since
        # the last fsync, the rest of the block filled from the backing file.
        self.blocks = {}
        # The file's size as written, while blocks are held; None when the backing size is current.
        self.size = None
        self.unlinked = False

    @property
    def path(self):
        return next(iter(self.paths))


class PowerCutFs(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, backing):
        super().__init__()
        self.backing = backing
        root = Inode(pyfuse3.ROOT_INODE, backing)
        self.inodes = {pyfuse3.ROOT_INODE: root}
        self.by_key = {self._key(backing): pyfuse3.ROOT_INODE}
        self.next_inode = pyfuse3.ROOT_INODE + 1
        # File handle -> (inode number, backing fd, opened with O_SYNC/O_DSYNC)
        self.handles = {}
        self.next_handle = 1
        self.fsyncs = 0
        self.dir_fsyncs = 0
        self.dead = False

    def _alive(self):
        # After the cut nothing more reaches the backing directory.
        if self.dead:
            raise pyfuse3.FUSEError(errno.EIO)

    # --- inodes and attributes ---------------------------------------------------------------

    @staticmethod
    def _key(path):
        st = os.lstat(path)
        return (st.st_dev, st.st_ino)

    def _remember(self, path):
        key = self._key(path)
        number = self.by_key.get(key)
        if number is None:
            number = self.next_inode
            self.next_inode += 1
            self.by_key[key] = number
            self.inodes[number] = Inode(number, path)
        else:
            self.inodes[number].paths.add(path)
        return self.inodes[number]

    def _inode(self, number):
        inode = self.inodes.get(number)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return inode

    def _attributes(self, inode, path=None):
        try:
            if inode.unlinked:
                fds = [handle[1] for handle in self.handles.values() if handle[0] == inode.number and isinstance(handle[1], int)]
                if not fds:
                    raise pyfuse3.FUSEError(errno.ENOENT)
                st = os.fstat(fds[0])
            else:
                st = os.lstat(path or inode.path)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode.number
        entry.generation = 0
        # No caching in the kernel: every lookup and stat comes here.
        entry.entry_timeout = 0
        entry.attr_timeout = 0
        entry.st_mode = st.st_mode
        entry.st_nlink = st.st_nlink
        entry.st_uid = st.st_uid
        entry.st_gid = st.st_gid
        entry.st_rdev = st.st_rdev
        entry.st_size = inode.size if inode.size is not None else st.st_size
        entry.st_blksize = BLOCK
        entry.st_blocks = (entry.st_size + 511) // 512
        entry.st_atime_ns = st.st_atime_ns
        entry.st_mtime_ns = st.st_mtime_ns
        entry.st_ctime_ns = st.st_ctime_ns
        return entry

    def _child(self, parent, name):
        return os.path.join(self._inode(parent).path, os.fsdecode(name))

    async def lookup(self, parent_inode, name, ctx=None):
        path = self._child(parent_inode, name)
        try:
            inode = self._remember(path)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        inode.lookups += 1
        return self._attributes(inode)

    async def forget(self, inode_list):
        for number, count in inode_list:
            inode = self.inodes.get(number)
            if inode is None or number == pyfuse3.ROOT_INODE:
                continue
            inode.lookups -= count
            if inode.lookups <= 0 and not inode.blocks and not self._is_open(number):
                del self.inodes[number]
                self._unmap(number)

    def _is_open(self, number):
        return any(handle[0] == number for handle in self.handles.values())

    async def getattr(self, inode, ctx=None):
        return self._attributes(self._inode(inode))

    async def setattr(self, inode_number, attr, fields, fh, ctx):
        self._alive()
        inode = self._inode(inode_number)
        path = inode.path
        try:
            if fields.update_size:
                # Metadata goes straight through; what is held past the new end is cut off.
                os.truncate(path, attr.st_size)
                self._truncate_held(inode, attr.st_size)
            if fields.update_mode:
                os.chmod(path, stat.S_IMODE(attr.st_mode))
            if fields.update_uid or fields.update_gid:
                os.chown(
                    path,
                    attr.st_uid if fields.update_uid else -1,
                    attr.st_gid if fields.update_gid else -1,
                    follow_symlinks=False,
                )
            if fields.update_atime or fields.update_mtime:
                st = os.lstat(path)
                os.utime(
                    path,
                    ns=(
                        attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                        attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns,
                    ),
                    follow_symlinks=False,
                )
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        return self._attributes(inode)

    def _truncate_held(self, inode, size):
        if not inode.blocks:
            inode.size = None
            return
        inode.size = size
        for index in [index for index in inode.blocks if index * BLOCK >= size]:
            del inode.blocks[index]
        last = inode.blocks.get(size // BLOCK)
        if last is not None:
            offset = size % BLOCK
            last[offset:] = bytes(BLOCK - offset)

    async def statfs(self, ctx):
        st = os.statvfs(self.backing)
        data = pyfuse3.StatvfsData()
        for name in ('f_bsize', 'f_frsize', 'f_blocks', 'f_bfree', 'f_bavail', 'f_files', 'f_ffree', 'f_favail'):
            setattr(data, name, getattr(st, name))
        data.f_namemax = st.f_namemax
        return data

    # --- names: straight through to the backing directory ------------------------------------

    async def mkdir(self, parent_inode, name, mode, ctx):
        self._alive()
        path = self._child(parent_inode, name)
        try:
            os.mkdir(path, mode)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        inode = self._remember(path)
        inode.lookups += 1
        return self._attributes(inode)

    async def create(self, parent_inode, name, mode, flags, ctx):
        self._alive()
        path = self._child(parent_inode, name)
        try:
            keep = flags & ~(os.O_ACCMODE | os.O_APPEND | os.O_TRUNC | os.O_SYNC | os.O_DSYNC)
            fd = os.open(path, keep | os.O_CREAT | os.O_RDWR, mode)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        inode = self._remember(path)
        inode.lookups += 1
        return (self._new_handle(inode, fd, flags), self._attributes(inode))

    async def unlink(self, parent_inode, name, ctx):
        self._alive()
        path = self._child(parent_inode, name)
        number = self.by_key.get(self._key_or_error(path))
        try:
            os.unlink(path)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        self._forget_path(number, path)

    async def rmdir(self, parent_inode, name, ctx):
        self._alive()
        path = self._child(parent_inode, name)
        number = self.by_key.get(self._key_or_error(path))
        try:
            os.rmdir(path)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        self._forget_path(number, path)

    def _key_or_error(self, path):
        try:
            return self._key(path)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)

    def _forget_path(self, number, path):
        inode = self.inodes.get(number)
        if inode is None:
            return
        inode.paths.discard(path)
        if not inode.paths:
            # Gone from every directory: nothing held for it can ever be read back, and the backing
            # file system may give its inode number to a new file.
            inode.blocks.clear()
            inode.size = None
            inode.unlinked = True
            inode.paths.add(path)
            self._unmap(number)

    def _unmap(self, number):
        self.by_key = {key: value for key, value in self.by_key.items() if value != number}

    async def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):
        self._alive()
        if flags != 0:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_old, name_old)
        new = self._child(parent_new, name_new)
        moved = self.by_key.get(self._key_or_error(old))
        try:
            replaced = self.by_key.get(self._key(new))
        except OSError:
            replaced = None
        try:
            os.rename(old, new)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        if replaced is not None and replaced != moved:
            self._forget_path(replaced, new)
        inode = self.inodes.get(moved)
        if inode is not None:
            inode.paths.discard(old)
            inode.paths.add(new)
            if os.path.isdir(new):
                # Paths of everything known below a renamed directory change with it.
                for other in self.inodes.values():
                    other.paths = {
                        new + each[len(old) :] if each.startswith(old + os.sep) else each for each in other.paths
                    }

    async def link(self, inode_number, new_parent, new_name, ctx):
        self._alive()
        inode = self._inode(inode_number)
        path = self._child(new_parent, new_name)
        try:
            os.link(inode.path, path)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        inode.paths.add(path)
        inode.lookups += 1
        return self._attributes(inode)

    async def symlink(self, parent_inode, name, target, ctx):
        self._alive()
        path = self._child(parent_inode, name)
        try:
            os.symlink(target, path)
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        inode = self._remember(path)
        inode.lookups += 1
        return self._attributes(inode)

    async def readlink(self, inode_number, ctx):
        try:
            return os.fsencode(os.readlink(self._inode(inode_number).path))
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)

    async def opendir(self, inode_number, ctx):
        inode = self._inode(inode_number)
        try:
            names = sorted(os.listdir(inode.path))
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno)
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = (inode_number, names, False)
        return handle

    async def readdir(self, fh, start_id, token):
        number, names, _ = self.handles[fh]
        parent = self._inode(number)
        for index in range(start_id, len(names)):
            path = os.path.join(parent.path, names[index])
            try:
                inode = self._remember(path)
                attributes = self._attributes(inode, path)
            except (OSError, pyfuse3.FUSEError):
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(names[index]), attributes, index + 1):
                return
            inode.lookups += 1

    async def releasedir(self, fh):
        self.handles.pop(fh, None)

    async def fsyncdir(self, fh, datasync):
        # Names are already durable in this model (see the module comment); counted for the tests.
        self.dir_fsyncs += 1

    # --- data: held until fsync ---------------------------------------------------------------

    def _new_handle(self, inode, fd, flags):
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = (inode.number, fd, bool(flags & (os.O_SYNC | os.O_DSYNC)))
        # No direct_io: LMDB maps its data file, and FUSE maps only files served through the page
        # cache. No keep_cache: each open drops that cache, and a cut remounts.
        return pyfuse3.FileInfo(fh=handle, direct_io=False, keep_cache=False)

    async def open(self, inode_number, flags, ctx):
        inode = self._inode(inode_number)
        # Read-write underneath whatever was asked: a partial block write reads the rest of it.
        try:
            fd = os.open(inode.path, os.O_RDWR)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EROFS, errno.EISDIR):
                raise pyfuse3.FUSEError(error.errno)
            try:
                fd = os.open(inode.path, os.O_RDONLY)
            except OSError as error2:
                raise pyfuse3.FUSEError(error2.errno)
        return self._new_handle(inode, fd, flags)

    def _backing_block(self, fd, index):
        data = os.pread(fd, BLOCK, index * BLOCK)
        return bytearray(data) + bytearray(BLOCK - len(data))

    async def read(self, fh, offset, length):
        number, fd, _ = self.handles[fh]
        inode = self._inode(number)
        if not inode.blocks:
            return os.pread(fd, length, offset)
        size = inode.size
        end = min(offset + length, size)
        if offset >= end:
            return b''
        out = bytearray()
        position = offset
        while position < end:
            index = position // BLOCK
            within = position % BLOCK
            take = min(BLOCK - within, end - position)
            block = inode.blocks.get(index)
            if block is None:
                chunk = os.pread(fd, take, position)
                out += chunk + bytes(take - len(chunk))
            else:
                out += block[within : within + take]
            position += take
        return bytes(out)

    async def write(self, fh, offset, data):
        number, fd, synchronous = self.handles[fh]
        self._alive()
        inode = self._inode(number)
        backing_size = os.fstat(fd).st_size
        if inode.size is None:
            inode.size = backing_size
        position = offset
        view = memoryview(data)
        while position < offset + len(data):
            index = position // BLOCK
            within = position % BLOCK
            take = min(BLOCK - within, offset + len(data) - position)
            block = inode.blocks.get(index)
            if block is None:
                block = self._backing_block(fd, index) if index * BLOCK < backing_size else bytearray(BLOCK)
                # Bytes past the size as written are zero, whatever the backing file still has there.
                if inode.size < (index + 1) * BLOCK:
                    cut = max(inode.size - index * BLOCK, 0)
                    block[cut:] = bytes(BLOCK - cut)
                inode.blocks[index] = block
            block[within : within + take] = view[position - offset : position - offset + take]
            position += take
        inode.size = max(inode.size, offset + len(data))
        if synchronous:
            # O_SYNC/O_DSYNC: this write is durable when it returns, the rest of the file is not.
            os.pwrite(fd, data, offset)
        return len(data)

    def _flush(self, inode, fd):
        if not inode.blocks:
            inode.size = None
            return
        size = inode.size
        for index in sorted(inode.blocks):
            start = index * BLOCK
            if start >= size:
                continue
            os.pwrite(fd, bytes(inode.blocks[index][: min(BLOCK, size - start)]), start)
        if os.fstat(fd).st_size != size:
            os.ftruncate(fd, size)
        inode.blocks.clear()
        inode.size = None

    async def fsync(self, fh, datasync):
        number, fd, _ = self.handles[fh]
        self._alive()
        self.fsyncs += 1
        # The backing file is not fsynced: the model's disk is this process's notion of durable.
        self._flush(self._inode(number), fd)

    async def flush(self, fh):
        pass

    async def release(self, fh):
        # What is held stays with the inode: closing a file does not make it durable.
        _, fd, _ = self.handles.pop(fh)
        os.close(fd)

    # --- the cut -------------------------------------------------------------------------------

    def held(self):
        files = sum(1 for inode in self.inodes.values() if inode.blocks)
        held_bytes = sum(len(inode.blocks) * BLOCK for inode in self.inodes.values())
        return {'files': files, 'bytes': held_bytes, 'fsyncs': self.fsyncs, 'dirFsyncs': self.dir_fsyncs}

    def cut(self):
        dropped = self.held()
        self.dead = True
        for inode in self.inodes.values():
            inode.blocks.clear()
            inode.size = None
        return dropped


def answer(value):
    sys.stdout.write(json.dumps(value) + '\n')
    sys.stdout.flush()


async def commands(fs):
    """Reads commands from stdin until `cut` or its end, then ends the file system's main loop."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    pending = b''
    while True:
        chunk = await stream.receive_some(4096)
        if not chunk:
            fs.cut()
            break
        pending += chunk
        *lines, pending = pending.split(b'\n')
        stop = False
        for line in lines:
            command = line.decode().strip()
            if command == 'stats':
                answer(fs.held())
            elif command == 'cut':
                answer({'dropped': fs.cut()})
                stop = True
                break
            elif command:
                answer({'error': f'unknown command {command!r}'})
        if stop:
            break
    pyfuse3.terminate()


async def serve(fs):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(commands, fs)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main():
    if len(sys.argv) != 3:
        sys.stderr.write('usage: power-cut-fs.py BACKING MOUNTPOINT\n')
        sys.exit(2)
    backing, mountpoint = (os.path.abspath(arg) for arg in sys.argv[1:])
    fs = PowerCutFs(backing)
    options = set(pyfuse3.default_options)
    options.add('fsname=power-cut-fs')
    options.add('subtype=power-cut')
    pyfuse3.init(fs, mountpoint, options)
    answer({'mounted': mountpoint})
    try:
        trio.run(serve, fs)
    finally:
        # Unmounts (the kernel then forgets every page of this mount) without writing anything held.
        pyfuse3.close(unmount=True)


if __name__ == '__main__':
    main()
