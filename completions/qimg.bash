_qimg() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="qimg"
                ;;
            qimg,amend)
                cmd="qimg__subcmd__amend"
                ;;
            qimg,backup)
                cmd="qimg__subcmd__backup"
                ;;
            qimg,bitmap)
                cmd="qimg__subcmd__bitmap"
                ;;
            qimg,check)
                cmd="qimg__subcmd__check"
                ;;
            qimg,checksum)
                cmd="qimg__subcmd__checksum"
                ;;
            qimg,commit)
                cmd="qimg__subcmd__commit"
                ;;
            qimg,compare)
                cmd="qimg__subcmd__compare"
                ;;
            qimg,convert)
                cmd="qimg__subcmd__convert"
                ;;
            qimg,create)
                cmd="qimg__subcmd__create"
                ;;
            qimg,dd)
                cmd="qimg__subcmd__dd"
                ;;
            qimg,help)
                cmd="qimg__subcmd__help"
                ;;
            qimg,info)
                cmd="qimg__subcmd__info"
                ;;
            qimg,job)
                cmd="qimg__subcmd__job"
                ;;
            qimg,map)
                cmd="qimg__subcmd__map"
                ;;
            qimg,measure)
                cmd="qimg__subcmd__measure"
                ;;
            qimg,mirror)
                cmd="qimg__subcmd__mirror"
                ;;
            qimg,rebase)
                cmd="qimg__subcmd__rebase"
                ;;
            qimg,resize)
                cmd="qimg__subcmd__resize"
                ;;
            qimg,snapshot)
                cmd="qimg__subcmd__snapshot"
                ;;
            qimg,stream)
                cmd="qimg__subcmd__stream"
                ;;
            qimg__subcmd__help,amend)
                cmd="qimg__subcmd__help__subcmd__amend"
                ;;
            qimg__subcmd__help,backup)
                cmd="qimg__subcmd__help__subcmd__backup"
                ;;
            qimg__subcmd__help,bitmap)
                cmd="qimg__subcmd__help__subcmd__bitmap"
                ;;
            qimg__subcmd__help,check)
                cmd="qimg__subcmd__help__subcmd__check"
                ;;
            qimg__subcmd__help,checksum)
                cmd="qimg__subcmd__help__subcmd__checksum"
                ;;
            qimg__subcmd__help,commit)
                cmd="qimg__subcmd__help__subcmd__commit"
                ;;
            qimg__subcmd__help,compare)
                cmd="qimg__subcmd__help__subcmd__compare"
                ;;
            qimg__subcmd__help,convert)
                cmd="qimg__subcmd__help__subcmd__convert"
                ;;
            qimg__subcmd__help,create)
                cmd="qimg__subcmd__help__subcmd__create"
                ;;
            qimg__subcmd__help,dd)
                cmd="qimg__subcmd__help__subcmd__dd"
                ;;
            qimg__subcmd__help,help)
                cmd="qimg__subcmd__help__subcmd__help"
                ;;
            qimg__subcmd__help,info)
                cmd="qimg__subcmd__help__subcmd__info"
                ;;
            qimg__subcmd__help,job)
                cmd="qimg__subcmd__help__subcmd__job"
                ;;
            qimg__subcmd__help,map)
                cmd="qimg__subcmd__help__subcmd__map"
                ;;
            qimg__subcmd__help,measure)
                cmd="qimg__subcmd__help__subcmd__measure"
                ;;
            qimg__subcmd__help,mirror)
                cmd="qimg__subcmd__help__subcmd__mirror"
                ;;
            qimg__subcmd__help,rebase)
                cmd="qimg__subcmd__help__subcmd__rebase"
                ;;
            qimg__subcmd__help,resize)
                cmd="qimg__subcmd__help__subcmd__resize"
                ;;
            qimg__subcmd__help,snapshot)
                cmd="qimg__subcmd__help__subcmd__snapshot"
                ;;
            qimg__subcmd__help,stream)
                cmd="qimg__subcmd__help__subcmd__stream"
                ;;
            qimg__subcmd__help__subcmd__job,cancel)
                cmd="qimg__subcmd__help__subcmd__job__subcmd__cancel"
                ;;
            qimg__subcmd__help__subcmd__job,complete)
                cmd="qimg__subcmd__help__subcmd__job__subcmd__complete"
                ;;
            qimg__subcmd__help__subcmd__job,list)
                cmd="qimg__subcmd__help__subcmd__job__subcmd__list"
                ;;
            qimg__subcmd__help__subcmd__job,pause)
                cmd="qimg__subcmd__help__subcmd__job__subcmd__pause"
                ;;
            qimg__subcmd__help__subcmd__job,resume)
                cmd="qimg__subcmd__help__subcmd__job__subcmd__resume"
                ;;
            qimg__subcmd__help__subcmd__job,set-speed)
                cmd="qimg__subcmd__help__subcmd__job__subcmd__set__subcmd__speed"
                ;;
            qimg__subcmd__help__subcmd__job,wait)
                cmd="qimg__subcmd__help__subcmd__job__subcmd__wait"
                ;;
            qimg__subcmd__job,cancel)
                cmd="qimg__subcmd__job__subcmd__cancel"
                ;;
            qimg__subcmd__job,complete)
                cmd="qimg__subcmd__job__subcmd__complete"
                ;;
            qimg__subcmd__job,help)
                cmd="qimg__subcmd__job__subcmd__help"
                ;;
            qimg__subcmd__job,list)
                cmd="qimg__subcmd__job__subcmd__list"
                ;;
            qimg__subcmd__job,pause)
                cmd="qimg__subcmd__job__subcmd__pause"
                ;;
            qimg__subcmd__job,resume)
                cmd="qimg__subcmd__job__subcmd__resume"
                ;;
            qimg__subcmd__job,set-speed)
                cmd="qimg__subcmd__job__subcmd__set__subcmd__speed"
                ;;
            qimg__subcmd__job,wait)
                cmd="qimg__subcmd__job__subcmd__wait"
                ;;
            qimg__subcmd__job__subcmd__help,cancel)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__cancel"
                ;;
            qimg__subcmd__job__subcmd__help,complete)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__complete"
                ;;
            qimg__subcmd__job__subcmd__help,help)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__help"
                ;;
            qimg__subcmd__job__subcmd__help,list)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__list"
                ;;
            qimg__subcmd__job__subcmd__help,pause)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__pause"
                ;;
            qimg__subcmd__job__subcmd__help,resume)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__resume"
                ;;
            qimg__subcmd__job__subcmd__help,set-speed)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__set__subcmd__speed"
                ;;
            qimg__subcmd__job__subcmd__help,wait)
                cmd="qimg__subcmd__job__subcmd__help__subcmd__wait"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        qimg)
            opts="-h -V --help --version create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__amend)
            opts="-f -o -p -q -t -h --format --options --progress --quiet --force --cache --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --options)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__backup)
            opts="-r -p -q -f -c -h --attach --device --job-id --detach --rate --when-idle --progress --quiet --format --sync --bitmap --bitmap-mode --compress --existing --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --job-id)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -r)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --when-idle)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --sync)
                    COMPREPLY=($(compgen -W "full top bitmap incremental none" -- "${cur}"))
                    return 0
                    ;;
                --bitmap)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --bitmap-mode)
                    COMPREPLY=($(compgen -W "on-success always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__bitmap)
            opts="-g -b -F -f -h --add --remove --clear --enable --disable --merge --granularity --source-file --source-format --format --image-opts --object --untrusted --attach --device --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --merge)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --granularity)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -g)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --source-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -b)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --source-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -F)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__check)
            opts="-f -r -q -T -U -h --format --output --repair --safety --quiet --cache --force-share --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --repair)
                    COMPREPLY=($(compgen -W "leaks all" -- "${cur}"))
                    return 0
                    ;;
                -r)
                    COMPREPLY=($(compgen -W "leaks all" -- "${cur}"))
                    return 0
                    ;;
                --cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -T)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__checksum)
            opts="-f -a -m -p -U -h --format --digest --algorithm --block-size --threads --parallel --output --progress --force-share --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --algorithm)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --digest)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -a)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --block-size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --parallel)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --threads)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -m)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__commit)
            opts="-f -t -b -d -p -q -r -h --format --cache --base --drop --when-idle --progress --quiet --rate --attach --device --base-node --job-id --detach --top --top-node --no-pivot --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --base)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -b)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --when-idle)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -r)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --base-node)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --job-id)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --top)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --top-node)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__compare)
            opts="-f -F -s -q -U -p -h --format --second-format --strict --quiet --force-share --progress --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --second-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -F)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__convert)
            opts="-f -O -o -c -B -F -n -S -m -W -p -q -U -r -l -t -T -C -h --source-format --output-format --target-format --options --target-options --compress --backing --backing-format --no-create --target-is-zero --sparse-size --parallel --oob-writes --progress --quiet --force-share --rate --snapshot --source-snapshot --output-cache --target-cache --source-cache --copy-range-offloading --salvage --bitmaps --skip-broken-bitmaps --checksum --target-image-opts --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --source-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --target-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --output-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -O)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --target-options)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                --options)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                --backing)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -B)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backing-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -F)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --sparse-size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -S)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --parallel)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -m)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -r)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --source-snapshot)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --snapshot)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -l)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --target-cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --output-cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --source-cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -T)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --checksum)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__create)
            opts="-f -o -b -F -u -q -h --format --options --backing --backing-format --backing-unsafe --quiet --object --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --options)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                --backing)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -b)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backing-format)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -F)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__dd)
            opts="-f -O -U -n -l -h --format --output-format --force-share --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --output-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -O)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -l)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help)
            opts="create info map measure check convert dd stream commit compare checksum rebase resize snapshot amend bitmap job mirror backup help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__amend)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__backup)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__bitmap)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__check)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__checksum)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__commit)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__compare)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__convert)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__create)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__dd)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__info)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job)
            opts="list pause resume cancel complete set-speed wait"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job__subcmd__cancel)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job__subcmd__complete)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job__subcmd__pause)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job__subcmd__resume)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job__subcmd__set__subcmd__speed)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__job__subcmd__wait)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__map)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__measure)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__mirror)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__rebase)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__resize)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__snapshot)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__help__subcmd__stream)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__info)
            opts="-f -b -U -h --format --output --backing-chain --force-share --attach --device --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job)
            opts="-h --attach --help list pause resume cancel complete set-speed wait help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__cancel)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__complete)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help)
            opts="list pause resume cancel complete set-speed wait help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__cancel)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__complete)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__pause)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__resume)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__set__subcmd__speed)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__help__subcmd__wait)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__list)
            opts="-h --output --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --output)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__pause)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__resume)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__set__subcmd__speed)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__job__subcmd__wait)
            opts="-p -h --progress --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__map)
            opts="-f -s -l -U -h --format --output --start-offset --max-length --force-share --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --start-offset)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -s)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --max-length)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -l)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__measure)
            opts="-O -o -l -f -U -h --output --output-format --options --snapshot --size --format --force-share --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --output)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --output-format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -O)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --options)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -W "adapter_type= backing_file= backing_fmt= block_size= block_state_zero= cipher-alg= cipher-mode= cluster_size= compat= compat6= compression_type= data_file= data_file_raw= detached-header= encrypt.cipher-alg= encrypt.cipher-mode= encrypt.format= encrypt.hash-alg= encrypt.iter-time= encrypt.ivgen-alg= encrypt.ivgen-hash-alg= encrypt.key-secret= encryption= extended_l2= extent_size_hint= force_size= hash-alg= hwversion= iter-time= ivgen-alg= ivgen-hash-alg= key-secret= lazy_refcounts= log_size= nocow= preallocation= refcount_bits= size= static= subformat= table_size= toolsversion= zeroed_grain=" -- "${cur}"))
                    return 0
                    ;;
                --snapshot)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -l)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__mirror)
            opts="-r -p -q -f -h --attach --device --job-id --detach --rate --when-idle --progress --quiet --format --sync --existing --granularity --buf-size --no-pivot --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --job-id)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -r)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --when-idle)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --sync)
                    COMPREPLY=($(compgen -W "full top none" -- "${cur}"))
                    return 0
                    ;;
                --granularity)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --buf-size)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__rebase)
            opts="-f -t -T -p -q -U -u -r -c -b -F -h --format --cache --backing-cache --progress --quiet --force-share --backing-unsafe --rate --compress --backing --backing-format --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backing-cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -T)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --rate)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -r)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backing)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -b)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backing-format)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -F)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__resize)
            opts="-f -q -h --format --shrink --preallocation --quiet --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --preallocation)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__snapshot)
            opts="-l -c -a -d -f -q -U -h --format --quiet --force-share --attach --device --external --node-name --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                -c)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -a)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -d)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --external)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --node-name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        qimg__subcmd__stream)
            opts="-f -r -p -h --format --base --backing-file --offset --length --rate-limit --time-limit --deadline --when-idle --progress --output --attach --device --base-node --job-id --detach --image-opts --object --untrusted --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                -f)
                    COMPREPLY=($(compgen -W "qcow2 qed vmdk vpc vdi vhdx luks raw" -- "${cur}"))
                    return 0
                    ;;
                --base)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --backing-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --offset)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --length)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --rate-limit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -r)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --time-limit)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --deadline)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --when-idle)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --progress)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                -p)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --output)
                    COMPREPLY=($(compgen -W "human json" -- "${cur}"))
                    return 0
                    ;;
                --attach)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --device)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --base-node)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --job-id)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --object)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _qimg -o nosort -o bashdefault -o default qimg
else
    complete -F _qimg -o bashdefault -o default qimg
fi
