<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

// What the queue and scheduler tests read back: one row per job run, one per scheduled tick.
return new class extends Migration {
    public function up(): void
    {
        Schema::create('job_runs', function (Blueprint $table) {
            $table->bigIncrements('id');
            $table->string('job_key')->index();
            $table->integer('pid');
            $table->string('sapi');
            $table->string('code_version');
            $table->double('started_at');
            $table->double('finished_at')->nullable();
        });
        Schema::create('ticks', function (Blueprint $table) {
            $table->bigIncrements('id');
            $table->string('source');
            $table->integer('pid');
            $table->double('at');
        });
    }

    public function down(): void
    {
        Schema::dropIfExists('ticks');
        Schema::dropIfExists('job_runs');
    }
};
