# `cmake --install` puts headers, liblowrank.a and a package config in place for find_package(lowrank).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
foreach(dir core kernels nn optim models analysis)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/ DESTINATION include/lowrank/${dir}
          FILES_MATCHING PATTERN "*.h")
endforeach()
install(TARGETS lowrank EXPORT lowrankTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS lowrank_flags EXPORT lowrankTargets)
install(EXPORT lowrankTargets NAMESPACE lowrank:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lowrank)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/lowrankConfig.cmake.in
  ${PROJECT_BINARY_DIR}/lowrankConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lowrank)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lowrankConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/lowrankConfig.cmake ${PROJECT_BINARY_DIR}/lowrankConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lowrank)
