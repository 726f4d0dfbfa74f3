// fotrt: the command-line entry point. Dispatches to a subcommand; every error ends as one
// line on stderr and a non-zero exit code.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "launch/commands.h"
#include "parallel/mpi_session.h"
#include "runtime/core/logging.h"
#include "runtime/core/status.h"
#include "runtime/core/temp_files.h"

namespace {

// Messages are printed on one line: embedded newlines would break log parsing.
std::string one_line(std::string s) {
    for (char& ch : s) {
        if (ch == '\n' || ch == '\r') ch = ' ';
    }
    return s;
}

// How long a failed rank waits for the others to fail too before it aborts the world: the
// errors all ranks detect come from the same options and files within milliseconds.
constexpr double kAgreeSeconds = 3.0;

// "fotrt logits: error: ..." on one line (with the rank prefix when one is set).
void print_error(const char* command, std::string failure) {
    // Messages from option parsing already name the command: do not say it twice.
    const std::string self = std::string("fotrt ") + command + ": ";
    if (failure.rfind(self, 0) == 0) failure = failure.substr(self.size());
    std::fprintf(stderr, "%sfotrt %s: error: %s\n", fot::log_prefix().c_str(), command,
                 one_line(failure).c_str());
    std::fflush(stderr);
}

void print_usage() {
    std::cout << "usage: fotrt <command> [options]\n\n"
                 "fotrt runs LongLLaMA (Focused Transformer) models over very long inputs on a\n"
                 "CPU, a GPU or a cluster launched with mpirun.\n\ncommands:\n";
    for (const auto& c : fot::cli::commands()) {
        std::string n = c.name;
        std::cout << "  " << n << std::string(n.size() < 12 ? 12 - n.size() : 1, ' ') << c.summary
                  << "\n";
    }
    std::cout << "\nRun 'fotrt <command> --help' for the options and examples of a command.\n"
                 "Environment: FOT_LOG_LEVEL=error|warn|info|debug (default info).\n";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        print_usage();
        return 2;
    }
    std::string name = argv[1];
    if (name == "--help" || name == "-h" || name == "help") {
        print_usage();
        return 0;
    }
    if (name == "--version") {
        std::cout << "fotrt 0.1.0\n";
        return 0;
    }
    std::vector<std::string> args(argv + 2, argv + argc);
    for (const auto& c : fot::cli::commands()) {
        if (name != c.name) continue;
        // Errors end the whole job. An error every rank hits (a bad option or config, a layout
        // that does not fit the world) is printed once, by rank 0, and every rank finalizes
        // and exits 1; any other error is one line with the rank prefix, then MPI_Abort so no
        // peer is left waiting in a collective.
        std::string failure;
        try {
            fot::parallel::MpiSession mpi(&argc, &argv);
            fot::install_temp_file_cleanup();  // after MPI_Init, which may set handlers
            try {
                return c.run(args);
            } catch (const fot::Error& e) {
                failure = e.what();
            } catch (const std::bad_alloc&) {
                failure = "out of memory";
            } catch (const std::exception& e) {
                failure = e.what();
            }
            if (mpi.size() > 1) {
                if (!fot::parallel::every_rank_failed(kAgreeSeconds)) {
                    fot::parallel::abort_world(std::string("fotrt ") + c.name + ": " + failure);
                }
                // Printed before MPI_Finalize: once a rank has exited, the launcher may kill
                // the others.
                if (mpi.rank() == 0) {
                    fot::set_log_rank(-1, 1);  // one line for the whole job: no rank prefix
                    print_error(c.name,
                                failure + " (on all " + std::to_string(mpi.size()) + " ranks)");
                }
                return 1;
            }
        } catch (const std::exception& e) {
            failure = e.what();
        }
        print_error(c.name, failure);
        return 1;
    }
    std::fprintf(stderr, "fotrt: error: unknown command '%s' (see fotrt --help)\n", name.c_str());
    return 2;
}
