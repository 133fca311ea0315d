// replica-generator: a systemd generator (systemd.generator(7)), installed in
// /lib/systemd/system-generators. At every boot and daemon-reload it writes each profiled unit's
// drop-in into the generator output folder. Parses its arguments, calls ProfileGenerator, logs.
import Glibc
import Replica
import ReplicaKit

// systemd passes NORMAL-DIR EARLY-DIR LATE-DIR; `--profiles DIR` (repeatable, lowest priority
// first, before them) replaces the profile directories, for tests.
var arguments = Array(CommandLine.arguments.dropFirst())
var directories: [String] = []
while arguments.count >= 2, arguments[0] == "--profiles" {
    directories.append(arguments[1])
    arguments.removeFirst(2)
}
guard arguments.count == 1 || arguments.count == 3 else {
    printError("usage: replica-generator NORMAL-DIR [EARLY-DIR LATE-DIR]  (systemd runs it; see systemd.generator(7))")
    exit(ExitCode.usage)
}
// Under systemd a generator's standard error goes to the kernel log; keep it to what an operator needs.
let loader = directories.isEmpty ? ProfileLoader() : ProfileLoader(directories: directories)
let generator = ProfileGenerator(loader: loader)
for ignored in generator.units().ignored {
    printError("replica-generator: \(ignored): not a profile name (UNIT.service.conf, or UNIT.service.conf.d/); ignored")
}
do {
    for outcome in try generator.generate(into: arguments[0]) {
        if let error = outcome.error { printError("replica-generator: \(outcome.unit) will refuse to start: \(error)") }
    }
} catch {
    printError("replica-generator: \(error)")
    exit(ExitCode.failure)
}
