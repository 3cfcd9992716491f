# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_qimg_global_optspecs
    string join \n h/help V/version
end

function __fish_qimg_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_qimg_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_qimg_using_subcommand
    set -l cmd (__fish_qimg_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c qimg -n "__fish_qimg_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_needs_command" -s V -l version -d 'Print version'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "create" -d 'Create a new image'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "info" -d 'Show facts about an image (and its backing chain)'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "map" -d 'Show how guest ranges map to files (allocation, zeroes, backing depth)'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "measure" -d 'Tell how large an image converted into a format would be'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "check" -d 'Check an image\'s metadata for corruptions and leaks'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "convert" -d 'Copy one or more images into a new image, converting the format'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "dd" -d 'Copy a range of blocks of an image into a new image, as dd does'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "stream" -d 'Pull data from backing files into an image, then drop or move its backing pointer'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "commit" -d 'Copy an image\'s data down into its backing file'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "compare" -d 'Check whether two images show the guest the same content'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "checksum" -d 'Print a digest of each image\'s guest content (blksum\'s blkhash), whatever its format'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "rebase" -d 'Change an image\'s backing file, copying what differs'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "resize" -d 'Change an image\'s virtual size (grow, or shrink with --shrink)'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "snapshot" -d 'List, take, apply or delete a qcow2 image\'s internal snapshots'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "amend" -d 'Change the options of an existing image (qcow2 compat level, lazy refcounts, size)'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "bitmap" -d 'Add, remove, clear, enable, disable or merge a qcow2 image\'s persistent dirty bitmaps (bitmap ACTION... [-g SIZE] [-b SRC_FILE [-F FMT]] filename bitmap)'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "job" -d 'Control the block jobs of a running VM (list, pause, resume, cancel, complete, set-speed, wait)'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "mirror" -d 'Copy a running VM\'s disk to a new image while the guest writes, then switch the VM to it'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "backup" -d 'Back up a running VM\'s disk (full, or incremental with a dirty bitmap)'
complete -c qimg -n "__fish_qimg_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qimg -n "__fish_qimg_using_subcommand create" -s f -l format -d 'Format of the new image (default raw)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand create" -s o -l options -d 'Format options, comma separated (e.g. cluster_size=64k,compat=v3)' -r -f -a "adapter_type=\t''
backing_file=\t''
backing_fmt=\t''
block_size=\t''
block_state_zero=\t''
cipher-alg=\t''
cipher-mode=\t''
cluster_size=\t''
compat=\t''
compat6=\t''
compression_type=\t''
data_file=\t''
data_file_raw=\t''
detached-header=\t''
encrypt.cipher-alg=\t''
encrypt.cipher-mode=\t''
encrypt.format=\t''
encrypt.hash-alg=\t''
encrypt.iter-time=\t''
encrypt.ivgen-alg=\t''
encrypt.ivgen-hash-alg=\t''
encrypt.key-secret=\t''
encryption=\t''
extended_l2=\t''
extent_size_hint=\t''
force_size=\t''
hash-alg=\t''
hwversion=\t''
iter-time=\t''
ivgen-alg=\t''
ivgen-hash-alg=\t''
key-secret=\t''
lazy_refcounts=\t''
log_size=\t''
nocow=\t''
preallocation=\t''
refcount_bits=\t''
size=\t''
static=\t''
subformat=\t''
table_size=\t''
toolsversion=\t''
zeroed_grain=\t''"
complete -c qimg -n "__fish_qimg_using_subcommand create" -s b -l backing -d 'Backing file of the new image' -r
complete -c qimg -n "__fish_qimg_using_subcommand create" -s F -l backing-format -d 'Format of the backing file (required with -b)' -r
complete -c qimg -n "__fish_qimg_using_subcommand create" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand create" -s u -l backing-unsafe -d 'Do not open or check the backing file'
complete -c qimg -n "__fish_qimg_using_subcommand create" -s q -l quiet -d 'Print nothing on success'
complete -c qimg -n "__fish_qimg_using_subcommand create" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand info" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand info" -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'JSON for programs (qemu-img\'s schema)'"
complete -c qimg -n "__fish_qimg_using_subcommand info" -l attach -d 'Show the images the VM (or qemu-storage-daemon) behind this QMP socket has open, as its block layer sees them' -r
complete -c qimg -n "__fish_qimg_using_subcommand info" -l device -d 'With --attach: only this device\'s (or node\'s) chain' -r
complete -c qimg -n "__fish_qimg_using_subcommand info" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand info" -s b -l backing-chain -d 'Show every image of the backing chain'
complete -c qimg -n "__fish_qimg_using_subcommand info" -s U -l force-share -d 'Open the image in shared mode (it may be in use by a VM)'
complete -c qimg -n "__fish_qimg_using_subcommand info" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand info" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand info" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand map" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand map" -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'JSON for programs (qemu-img\'s schema)'"
complete -c qimg -n "__fish_qimg_using_subcommand map" -s s -l start-offset -d 'First guest offset to map' -r
complete -c qimg -n "__fish_qimg_using_subcommand map" -s l -l max-length -d 'Map at most this many bytes' -r
complete -c qimg -n "__fish_qimg_using_subcommand map" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand map" -s U -l force-share -d 'Open the image in shared mode (it may be in use by a VM)'
complete -c qimg -n "__fish_qimg_using_subcommand map" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand map" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand map" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand measure" -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'JSON for programs (qemu-img\'s schema)'"
complete -c qimg -n "__fish_qimg_using_subcommand measure" -s O -l output-format -d 'Format of the image to create (default raw)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand measure" -s o -l options -d 'Creation options of the target format (as for create)' -r -f -a "adapter_type=\t''
backing_file=\t''
backing_fmt=\t''
block_size=\t''
block_state_zero=\t''
cipher-alg=\t''
cipher-mode=\t''
cluster_size=\t''
compat=\t''
compat6=\t''
compression_type=\t''
data_file=\t''
data_file_raw=\t''
detached-header=\t''
encrypt.cipher-alg=\t''
encrypt.cipher-mode=\t''
encrypt.format=\t''
encrypt.hash-alg=\t''
encrypt.iter-time=\t''
encrypt.ivgen-alg=\t''
encrypt.ivgen-hash-alg=\t''
encrypt.key-secret=\t''
encryption=\t''
extended_l2=\t''
extent_size_hint=\t''
force_size=\t''
hash-alg=\t''
hwversion=\t''
iter-time=\t''
ivgen-alg=\t''
ivgen-hash-alg=\t''
key-secret=\t''
lazy_refcounts=\t''
log_size=\t''
nocow=\t''
preallocation=\t''
refcount_bits=\t''
size=\t''
static=\t''
subformat=\t''
table_size=\t''
toolsversion=\t''
zeroed_grain=\t''"
complete -c qimg -n "__fish_qimg_using_subcommand measure" -s l -l snapshot -d 'Measure this internal snapshot of FILE (an ID or a name)' -r
complete -c qimg -n "__fish_qimg_using_subcommand measure" -l size -d 'Measure an image of this size instead of FILE' -r
complete -c qimg -n "__fish_qimg_using_subcommand measure" -s f -l format -d 'Format of FILE (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand measure" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand measure" -s U -l force-share -d 'Open FILE in shared mode (it may be in use by a VM)'
complete -c qimg -n "__fish_qimg_using_subcommand measure" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand measure" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand measure" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand check" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand check" -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'JSON for programs (qemu-img\'s schema)'"
complete -c qimg -n "__fish_qimg_using_subcommand check" -s r -l repair -d 'Repair leaks, or everything' -r -f -a "leaks\t'Free leaked clusters'
all\t'Also rebuild refcounts and clear the corrupt and dirty bits'"
complete -c qimg -n "__fish_qimg_using_subcommand check" -s T -l cache -d 'Cache mode (none, writeback, unsafe, directsync, writethrough): checked as qemu-img checks it; qimg reads through the page cache' -r
complete -c qimg -n "__fish_qimg_using_subcommand check" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand check" -l safety -d 'Instead of the metadata check, decide whether the image is safe to accept from a stranger (an upload): one format, nothing it names (backing, data or extent files), no hidden second format, as OpenStack\'s format inspector decides. Exit 0 safe, 4 not safe'
complete -c qimg -n "__fish_qimg_using_subcommand check" -s q -l quiet -d 'Print nothing; the exit code tells the verdict'
complete -c qimg -n "__fish_qimg_using_subcommand check" -s U -l force-share -d 'Open the image in shared mode (read-only checks only)'
complete -c qimg -n "__fish_qimg_using_subcommand check" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand check" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s f -l source-format -d 'Source format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s O -l target-format -l output-format -d 'Target format (default raw)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s o -l target-options -l options -d 'Target creation options' -r -f -a "adapter_type=\t''
backing_file=\t''
backing_fmt=\t''
block_size=\t''
block_state_zero=\t''
cipher-alg=\t''
cipher-mode=\t''
cluster_size=\t''
compat=\t''
compat6=\t''
compression_type=\t''
data_file=\t''
data_file_raw=\t''
detached-header=\t''
encrypt.cipher-alg=\t''
encrypt.cipher-mode=\t''
encrypt.format=\t''
encrypt.hash-alg=\t''
encrypt.iter-time=\t''
encrypt.ivgen-alg=\t''
encrypt.ivgen-hash-alg=\t''
encrypt.key-secret=\t''
encryption=\t''
extended_l2=\t''
extent_size_hint=\t''
force_size=\t''
hash-alg=\t''
hwversion=\t''
iter-time=\t''
ivgen-alg=\t''
ivgen-hash-alg=\t''
key-secret=\t''
lazy_refcounts=\t''
log_size=\t''
nocow=\t''
preallocation=\t''
refcount_bits=\t''
size=\t''
static=\t''
subformat=\t''
table_size=\t''
toolsversion=\t''
zeroed_grain=\t''"
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s B -l backing -d 'Create the target with this backing file; copy only the source\'s top layer' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s F -l backing-format -d 'Format of the backing file' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s S -l sparse-size -d 'Shortest run of zeros to leave unallocated (default 4k; 0 disables)' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s m -l parallel -d 'Parallel workers' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s r -l rate -d 'Limit the copy rate in bytes per second (e.g. 50M)' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s l -l source-snapshot -l snapshot -d 'Convert this internal snapshot of the source' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s t -l target-cache -l output-cache -d 'Target cache mode: none (default: bulk data bypasses the page cache), writeback, or unsafe (no flushes, as qemu-img\'s default)' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s T -l source-cache -d 'Source cache mode (none, writeback, unsafe, directsync, writethrough): checked as qemu-img checks it; qimg reads through the page cache in every mode' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l checksum -d 'Print the blkhash digest (as `qimg checksum` and blksum compute it) of the data copied, `DIGEST  TARGET`, at the end: hashed as it is read, no extra read. Default algorithm sha256; not with -B' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s c -l compress -d 'Compress every cluster (qcow2 only)'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s n -l no-create -d 'Write into an existing target instead of creating it'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l target-is-zero -d 'Assume the target reads as zeros (needs -n)'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s W -l oob-writes -d 'Allow out-of-order writes (qimg always writes in parallel)'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s q -l quiet -d 'Print nothing on success'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s U -l force-share -d 'Open the sources in shared mode'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s C -l copy-range-offloading -d 'Copy offloading: data stored plainly in the source files is copied by the kernel (copy_file_range; block clones on XFS and btrfs) without being read, so zeros in it are copied as data, as with qemu-img -C. Refused with -c, -S or --salvage; ignored with --checksum'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l salvage -d 'Copy source sectors that cannot be read as zeros (one warning each) instead of failing'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l bitmaps -d 'Copy the source\'s persistent bitmaps into the (qcow2) target, after the data'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l skip-broken-bitmaps -d 'Skip inconsistent bitmaps when copying them (needs --bitmaps)'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l target-image-opts -d 'The target is an option string (driver=raw,file.filename=disk.img), as with --image-opts; needs -n'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand convert" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand dd" -s f -l format -d 'Format of the input (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand dd" -s O -l output-format -d 'Format of the output (default raw)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand dd" -s l -d 'Read this internal snapshot of the input (an ID or a name; Proxmox\'s extension)' -r
complete -c qimg -n "__fish_qimg_using_subcommand dd" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand dd" -s U -l force-share -d 'Open the input in shared mode (it may be in use by a VM)'
complete -c qimg -n "__fish_qimg_using_subcommand dd" -s n -d 'Write into the existing output instead of creating it (Proxmox\'s extension of qemu-img dd)'
complete -c qimg -n "__fish_qimg_using_subcommand dd" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand dd" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand dd" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand stream" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l base -d 'Stop pulling at this backing file; it becomes the new backing file' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l backing-file -d 'Name to record for the new backing file' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l offset -d 'Stream only from this guest offset (with --length)' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l length -d 'Stream only this many bytes (with --offset)' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -s r -l rate-limit -d 'Limit the copy rate in bytes per second (e.g. 50M)' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l time-limit -d 'Stop cleanly after this long (e.g. 2h), exit 75' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l deadline -d 'Stop cleanly at this local time (HH:MM), exit 75' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l when-idle -d 'Pause while host I/O pressure (PSI "some avg10" in /proc/pressure/io, or the file $QIMG_PSI_PATH names) is above PCT percent (default 10); with --attach, the VMM\'s job is paused and resumed' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l output -d 'Output format of the final report' -r -f -a "human\t'Text for people'
json\t'JSON for programs (qemu-img\'s schema)'"
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l attach -d 'Run the job in the VM (or qemu-storage-daemon) behind this QMP socket (a path, or tcp:HOST:PORT) instead of touching the files' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l device -d 'With --attach: the device or node name of the image (the active layer)' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l base-node -d 'With --attach: the base by node name (instead of a file name)' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l job-id -d 'With --attach: the block job\'s id (default: qimg-OP-PID)' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l detach -d 'With --attach: start the job, print its id and return at once'
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand stream" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand stream" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s t -l cache -d 'Cache mode of the images written: none (default: bulk data bypasses the page cache), writeback, or unsafe (no flushes)' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s b -l base -d 'Commit down to this backing file (implies -d)' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l when-idle -d 'With --attach: pause the VMM\'s job while host I/O pressure (PSI "some avg10" in /proc/pressure/io, or the file $QIMG_PSI_PATH names) is above PCT percent (default 10), and resume it when the host is quiet again' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s r -l rate -d 'Limit the copy rate in bytes per second (e.g. 50M)' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l attach -d 'Run the job in the VM (or qemu-storage-daemon) behind this QMP socket (a path, or tcp:HOST:PORT) instead of touching the files' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l device -d 'With --attach: the device or node name of the image (the active layer)' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l base-node -d 'With --attach: the base by node name (instead of a file name)' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l job-id -d 'With --attach: the block job\'s id (default: qimg-OP-PID)' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l top -d 'With --attach: the top of the commit by file name (default: the active layer, an active commit)' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l top-node -d 'With --attach: the top by node name' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s d -l drop -d 'Do not empty FILE after committing'
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s q -l quiet -d 'Print nothing on success'
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l detach -d 'With --attach: start the job, print its id and return at once'
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l no-pivot -d 'With --attach: leave an active commit unpivoted (the VM stays on the top; the data is in the base all the same)'
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand commit" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand commit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand compare" -s f -l format -d 'Format of the first image (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand compare" -s F -l second-format -d 'Format of the second image (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand compare" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand compare" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand compare" -s s -l strict -d 'Strict mode: images of different sizes, or that allocate a range differently, are different'
complete -c qimg -n "__fish_qimg_using_subcommand compare" -s q -l quiet -d 'Print nothing; only the exit status tells'
complete -c qimg -n "__fish_qimg_using_subcommand compare" -s U -l force-share -d 'Open the images in shared mode (they may be in use by a VM)'
complete -c qimg -n "__fish_qimg_using_subcommand compare" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand compare" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand compare" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -s a -l algorithm -l digest -d 'Digest algorithm, as blksum names it: sha256 (the default), sha224, sha384, sha512, sha512-224, sha512-256, sha1, sha3-224, sha3-256, sha3-384, sha3-512, shake128, shake256, blake2b512, blake2s256, blake3, sm3, ripemd160, md5, md5-sha1' -r
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -l block-size -d 'Block size of the construction (it changes the digest; blksum\'s default is 64 KiB)' -r
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -s m -l parallel -l threads -d 'Threads that read and hash data (the digest does not depend on it; default: the number of cores)' -r
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -l output -d 'Output format: `DIGEST  FILE` lines (blksum\'s and sha256sum\'s), or JSON' -r -f -a "human\t'Text for people'
json\t'JSON for programs (qemu-img\'s schema)'"
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -s U -l force-share -d 'Open the images in shared mode (they may be in use by a VM)'
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand checksum" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s t -l cache -d 'Cache mode of the images written: none (default: bulk data bypasses the page cache), writeback, or unsafe (no flushes)' -r
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s T -l backing-cache -d 'Backing cache mode: checked as qemu-img checks it; qimg reads the backing files through the page cache in every mode' -r
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s r -l rate -d 'Limit the copy rate in bytes per second (e.g. 50M)' -r
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s b -l backing -d 'The new backing file ("" for none; left out with -u, none too)' -r
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s F -l backing-format -d 'Format of the new backing file (required unless -b "")' -r
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s q -l quiet -d 'Print nothing on success'
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s U -l force-share -d 'Open the backing files in shared mode'
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s u -l backing-unsafe -d 'Only rewrite the backing file name and format'
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s c -l compress -d 'Compress the clusters written'
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand rebase" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand resize" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand resize" -l preallocation -d 'How to preallocate the grown range: off (default), falloc or full (raw), as the format supports' -r
complete -c qimg -n "__fish_qimg_using_subcommand resize" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand resize" -l shrink -d 'Allow a smaller size: everything past the new end is deleted'
complete -c qimg -n "__fish_qimg_using_subcommand resize" -s q -l quiet -d 'Print nothing on success'
complete -c qimg -n "__fish_qimg_using_subcommand resize" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand resize" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand resize" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s c -d 'Take a snapshot of the disk with this name (names need not be unique)' -r
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s a -d 'Make the snapshot with this ID or name the disk (what was written since is lost)' -r
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s d -d 'Delete the (first) snapshot with this name; IDs are not looked up, as with qemu-img' -r
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -l attach -d 'Take an external snapshot of a disk of the running VM (or qemu-storage-daemon) behind this QMP socket: with --external' -r
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -l device -d 'With --attach: the device or node name of the disk' -r
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -l external -d 'With --attach: create OVERLAY (as -f FMT, default qcow2) over the disk\'s active layer, and make the VM write into it from now on (the old layer stays as it is: a stable image to copy offline)' -r -F
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -l node-name -d 'With --external: the node name the VMM gives the overlay (for commands that name nodes, e.g. `commit --attach --device NAME` on qemu-storage-daemon; default: QEMU\'s generated name)' -r
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s l -d 'List the internal snapshots (the default)'
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s q -l quiet -d 'Quiet (accepted as by qemu-img; the list is still printed)'
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s U -l force-share -d 'Open the image in shared mode (it may be in use by a VM); only for listing'
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand snapshot" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand amend" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand amend" -s o -l options -d 'The options to change, comma separated (compat, refcount_bits, lazy_refcounts, size, data_file); `-o help` lists them' -r -f -a "adapter_type=\t''
backing_file=\t''
backing_fmt=\t''
block_size=\t''
block_state_zero=\t''
cipher-alg=\t''
cipher-mode=\t''
cluster_size=\t''
compat=\t''
compat6=\t''
compression_type=\t''
data_file=\t''
data_file_raw=\t''
detached-header=\t''
encrypt.cipher-alg=\t''
encrypt.cipher-mode=\t''
encrypt.format=\t''
encrypt.hash-alg=\t''
encrypt.iter-time=\t''
encrypt.ivgen-alg=\t''
encrypt.ivgen-hash-alg=\t''
encrypt.key-secret=\t''
encryption=\t''
extended_l2=\t''
extent_size_hint=\t''
force_size=\t''
hash-alg=\t''
hwversion=\t''
iter-time=\t''
ivgen-alg=\t''
ivgen-hash-alg=\t''
key-secret=\t''
lazy_refcounts=\t''
log_size=\t''
nocow=\t''
preallocation=\t''
refcount_bits=\t''
size=\t''
static=\t''
subformat=\t''
table_size=\t''
toolsversion=\t''
zeroed_grain=\t''"
complete -c qimg -n "__fish_qimg_using_subcommand amend" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand amend" -s t -l cache -d 'Cache mode of the image written: none (default: bulk data bypasses the page cache), writeback, or unsafe (no flushes)' -r
complete -c qimg -n "__fish_qimg_using_subcommand amend" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand amend" -s q -l quiet -d 'Print nothing but errors'
complete -c qimg -n "__fish_qimg_using_subcommand amend" -l force -d 'Accepted as by qemu-img (it allows amending encryption keys, which qimg does not open)'
complete -c qimg -n "__fish_qimg_using_subcommand amend" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand amend" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand amend" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l merge -d 'Add what bitmap SOURCE marks dirty (in FILE, or in -b\'s file) to BITMAP' -r
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -s g -l granularity -d 'The granularity of the bitmap --add creates (bytes per bit, a power of two from 512; default: the cluster size, within 4k..64k)' -r
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -s b -l source-file -d 'The image the --merge sources are read from (default: FILE)' -r -F
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -s F -l source-format -d 'Format of SRC_FILE (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -s f -l format -d 'Image format (probed when omitted)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l object -d 'Define an object: a secret that unlocks an encrypted image, e.g. secret,id=sec0,file=key.txt (or data=..., format=base64), named by key-secret=sec0 or encrypt.key-secret=sec0' -r
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l attach -d 'Change the bitmaps of a disk of the running VM (or qemu-storage-daemon) behind this QMP socket instead of a file; the only name then is BITMAP' -r
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l device -d 'With --attach: the device or node name whose bitmap it is' -r
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l add -d 'Create BITMAP (enabled: it records future writes)'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l remove -d 'Delete BITMAP (an inconsistent one too)'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l clear -d 'Mark every bit of BITMAP clean'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l enable -d 'Make BITMAP record future writes'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l disable -d 'Stop BITMAP recording writes'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l image-opts -d 'FILE is an option string (driver=qcow2,file.filename=disk.qcow2) instead of a file name'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -l untrusted -d 'Read images as data only, as for an upload from a stranger: refuse the backing files, external data files and extent files they name (paths, URLs, json: names alike) and QED images, opening none of them. `info` and `check` describe the image and list what they refused. Also set by QIMG_UNTRUSTED=1'
complete -c qimg -n "__fish_qimg_using_subcommand bitmap" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -l attach -d 'The VMM\'s QMP socket (a path, or tcp:HOST:PORT)' -r
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "list" -d 'List the block jobs (a table, or QEMU\'s records with --output json)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "pause" -d 'Pause a job'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "resume" -d 'Resume a paused job'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "cancel" -d 'Cancel a job (what it copied stays; a stream can be run again)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "complete" -d 'Complete a ready job (pivot an active commit)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "set-speed" -d 'Change a job\'s rate limit (bytes/s; 0: none)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "wait" -d 'Wait for a job to end (exit 0 when it completes, 1 when it fails or is cancelled elsewhere, 130/143 when interrupted, which cancels it). A mirror is waited for until it is ready (in sync), and left running'
complete -c qimg -n "__fish_qimg_using_subcommand job; and not __fish_seen_subcommand_from list pause resume cancel complete set-speed wait help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from list" -l output -d 'Output format' -r -f -a "human\t'Text for people'
json\t'JSON for programs (qemu-img\'s schema)'"
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from complete" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from set-speed" -s h -l help -d 'Print help'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from wait" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from wait" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the block jobs (a table, or QEMU\'s records with --output json)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Pause a job'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume a paused job'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a job (what it copied stays; a stream can be run again)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "complete" -d 'Complete a ready job (pivot an active commit)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "set-speed" -d 'Change a job\'s rate limit (bytes/s; 0: none)'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "wait" -d 'Wait for a job to end (exit 0 when it completes, 1 when it fails or is cancelled elsewhere, 130/143 when interrupted, which cancels it). A mirror is waited for until it is ready (in sync), and left running'
complete -c qimg -n "__fish_qimg_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l attach -d 'The QMP socket of the VM (or qemu-storage-daemon) that runs the job (a path, or tcp:HOST:PORT)' -r
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l device -d 'The device or node name of the disk (its active layer)' -r
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l job-id -d 'The block job\'s id (default: qimg-OP-PID)' -r
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -s r -l rate -d 'Limit the copy rate in bytes per second (e.g. 50M)' -r
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l when-idle -d 'Pause the VMM\'s job while host I/O pressure (PSI "some avg10" in /proc/pressure/io, or the file $QIMG_PSI_PATH names) is above PCT percent (default 10), and resume it when the host is quiet again' -r
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -s f -l format -d 'Format of TARGET (default: the source\'s)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l sync -d 'What to copy' -r -f -a "full\t'The whole chain\'s content: the target stands alone'
top\t'The active layer only: the target gets the source\'s backing file'
none\t'Nothing already there: only what the guest writes from now on'"
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l granularity -d 'Bytes per bit of the dirty bitmap that tracks the guest\'s writes (a power of two from 512 to 64M; default: QEMU\'s choice)' -r
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l buf-size -d 'How much the copy keeps in flight (default: QEMU\'s choice)' -r
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l detach -d 'Start the job, print its id and return at once'
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -s q -l quiet -d 'Print nothing on success'
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l existing -d 'TARGET exists already (of the source\'s size); it is opened, not created'
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -l no-pivot -d 'Stop once the target is in sync and leave the job running (the guest\'s writes keep reaching the target) for `qimg job complete`'
complete -c qimg -n "__fish_qimg_using_subcommand mirror" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l attach -d 'The QMP socket of the VM (or qemu-storage-daemon) that runs the job (a path, or tcp:HOST:PORT)' -r
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l device -d 'The device or node name of the disk (its active layer)' -r
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l job-id -d 'The block job\'s id (default: qimg-OP-PID)' -r
complete -c qimg -n "__fish_qimg_using_subcommand backup" -s r -l rate -d 'Limit the copy rate in bytes per second (e.g. 50M)' -r
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l when-idle -d 'Pause the VMM\'s job while host I/O pressure (PSI "some avg10" in /proc/pressure/io, or the file $QIMG_PSI_PATH names) is above PCT percent (default 10), and resume it when the host is quiet again' -r
complete -c qimg -n "__fish_qimg_using_subcommand backup" -s p -l progress -d 'Show progress (-p), or JSON Lines records with --progress=json' -r -f -a "human\t'A bar on a terminal, qemu-img\'s percentage lines otherwise'
json\t'JSON Lines records on stderr'"
complete -c qimg -n "__fish_qimg_using_subcommand backup" -s f -l format -d 'Format of TARGET (default: the source\'s)' -r -f -a "qcow2\t''
qed\t''
vmdk\t''
vpc\t''
vdi\t''
vhdx\t''
luks\t''
raw\t''"
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l sync -d 'What to copy' -r -f -a "full\t'The whole chain\'s content'
top\t'The active layer only (allocated clusters of the top image)'
bitmap\t'What BITMAP marks dirty, with --bitmap-mode saying what becomes of the bitmap'
incremental\t'What BITMAP marks dirty; the bitmap is cleared when the backup succeeds (an incremental backup)'
none\t'Nothing but the old content of what the guest writes meanwhile'"
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l bitmap -d 'The dirty bitmap of the device that --sync bitmap|incremental copies (with --sync full: the bitmap synchronised by the backup)' -r
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l bitmap-mode -d 'What becomes of --bitmap (default for --sync incremental: on-success)' -r -f -a "on-success\t'Cleared of what was copied, if the backup succeeds'
always\t'Cleared of what was copied, whatever the outcome'
never\t'Left as it was'"
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l detach -d 'Start the job, print its id and return at once'
complete -c qimg -n "__fish_qimg_using_subcommand backup" -s q -l quiet -d 'Print nothing on success'
complete -c qimg -n "__fish_qimg_using_subcommand backup" -s c -l compress -d 'Compress the target\'s clusters (a qcow2 target)'
complete -c qimg -n "__fish_qimg_using_subcommand backup" -l existing -d 'TARGET exists already (of the source\'s size); it is opened, not created'
complete -c qimg -n "__fish_qimg_using_subcommand backup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "create" -d 'Create a new image'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "info" -d 'Show facts about an image (and its backing chain)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "map" -d 'Show how guest ranges map to files (allocation, zeroes, backing depth)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "measure" -d 'Tell how large an image converted into a format would be'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "check" -d 'Check an image\'s metadata for corruptions and leaks'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "convert" -d 'Copy one or more images into a new image, converting the format'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "dd" -d 'Copy a range of blocks of an image into a new image, as dd does'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "stream" -d 'Pull data from backing files into an image, then drop or move its backing pointer'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "commit" -d 'Copy an image\'s data down into its backing file'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "compare" -d 'Check whether two images show the guest the same content'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "checksum" -d 'Print a digest of each image\'s guest content (blksum\'s blkhash), whatever its format'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "rebase" -d 'Change an image\'s backing file, copying what differs'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "resize" -d 'Change an image\'s virtual size (grow, or shrink with --shrink)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "snapshot" -d 'List, take, apply or delete a qcow2 image\'s internal snapshots'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "amend" -d 'Change the options of an existing image (qcow2 compat level, lazy refcounts, size)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "bitmap" -d 'Add, remove, clear, enable, disable or merge a qcow2 image\'s persistent dirty bitmaps (bitmap ACTION... [-g SIZE] [-b SRC_FILE [-F FMT]] filename bitmap)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "job" -d 'Control the block jobs of a running VM (list, pause, resume, cancel, complete, set-speed, wait)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "mirror" -d 'Copy a running VM\'s disk to a new image while the guest writes, then switch the VM to it'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "backup" -d 'Back up a running VM\'s disk (full, or incremental with a dirty bitmap)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and not __fish_seen_subcommand_from create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "list" -d 'List the block jobs (a table, or QEMU\'s records with --output json)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "pause" -d 'Pause a job'
complete -c qimg -n "__fish_qimg_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "resume" -d 'Resume a paused job'
complete -c qimg -n "__fish_qimg_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "cancel" -d 'Cancel a job (what it copied stays; a stream can be run again)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "complete" -d 'Complete a ready job (pivot an active commit)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "set-speed" -d 'Change a job\'s rate limit (bytes/s; 0: none)'
complete -c qimg -n "__fish_qimg_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "wait" -d 'Wait for a job to end (exit 0 when it completes, 1 when it fails or is cancelled elsewhere, 130/143 when interrupted, which cancels it). A mirror is waited for until it is ready (in sync), and left running'
