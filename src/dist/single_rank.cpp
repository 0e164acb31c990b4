#include "deltaserve/dist/communicator.h"

namespace ds::dist {

std::shared_ptr<Communicator> single_rank() { return std::make_shared<SingleRankCommunicator>(); }

}  // namespace ds::dist
